import { describe, it } from 'vitest';
import { gpu } from '../gpu';
import { tensor, add, matmul, sum, softmax, mul } from '../../src/index';

describe('smoke', () => {
  it('runs', async () => {
    await gpu();
    const a = tensor([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
    const b = tensor([1, 0, 0, 1, 1, 1], [3, 2]);
    const c = matmul(a, b);
    console.log(await c.toArray());
    const s = sum(mul(softmax(add(c, c)), c));
    console.log(await s.item());
    s.backward();
    console.log(await a.grad!.toArray());
  });
});
