/**
 * The autograd row: forward + backward of a 2-layer MLP (2 -> H -> H -> 2, relu, softmax
 * cross-entropy through logSoftmax, full batch of N points) on the GPU with the tape, and the
 * same step written by hand in plain JS (Float32Array, naive matmuls).
 */
import { add, backward, logSoftmax, matmul, mul, relu, scale, scope, sum, tensor, type Tensor } from '../src/index';
import { matmulIKJ, matmulTA, matmulTB } from './js-baselines';

/** Inputs and parameters shared by both implementations. */
export interface MlpProblem {
  n: number;
  hidden: number;
  classes: number;
  x: Float32Array; // [n, 2]
  yOneHot: Float32Array; // [n, classes]
  params: Float32Array[]; // w1 [2,H], b1 [H], w2 [H,H], b2 [H], w3 [H,C], b3 [C]
}

export function makeMlpProblem(n: number, hidden: number, rand: () => number): MlpProblem {
  const classes = 2;
  const x = Float32Array.from({ length: n * 2 }, () => 2 * rand() - 1);
  const yOneHot = new Float32Array(n * classes);
  for (let i = 0; i < n; i++) yOneHot[i * classes + (x[2 * i] * x[2 * i + 1] > 0 ? 1 : 0)] = 1;
  const w = (fanIn: number, fanOut: number) => {
    const s = Math.sqrt(6 / (fanIn + fanOut));
    return Float32Array.from({ length: fanIn * fanOut }, () => s * (2 * rand() - 1));
  };
  const b = (k: number) => Float32Array.from({ length: k }, () => 0.1 * (2 * rand() - 1));
  return {
    n,
    hidden,
    classes,
    x,
    yOneHot,
    params: [w(2, hidden), b(hidden), w(hidden, hidden), b(hidden), w(hidden, classes), b(classes)],
  };
}

/** GPU state: the problem's tensors, and a step that records forward + backward. */
export function gpuMlp(p: MlpProblem): { step: () => void; grads: () => Tensor[]; dispose: () => void } {
  const H = p.hidden;
  const shapes = [[2, H], [H], [H, H], [H], [H, p.classes], [p.classes]];
  const params = p.params.map((d, i) => tensor(d, shapes[i], { requiresGrad: true }));
  const x = tensor(p.x, [p.n, 2]);
  const y = tensor(p.yOneHot, [p.n, p.classes]);
  const [w1, b1, w2, b2, w3, b3] = params;
  const forwardBackward = (): void =>
    scope(() => {
      const h1 = relu(add(matmul(x, w1), b1));
      const h2 = relu(add(matmul(h1, w2), b2));
      const logits = add(matmul(h2, w3), b3);
      const loss = scale(sum(mul(logSoftmax(logits), y)), -1 / p.n);
      backward(loss);
    });
  return {
    step: () => {
      forwardBackward();
      // .grad accumulates across backward calls: free it so that every step does the same work.
      for (const t of params) {
        t.grad?.dispose();
        t.grad = null;
      }
    },
    grads: () => {
      forwardBackward();
      return params.map((t) => t.grad!);
    },
    dispose: () => {
      for (const t of [...params, x, y]) t.dispose();
    },
  };
}

/** The same forward + backward in plain JS; returns the gradients (buffers reused across calls). */
export function jsMlp(p: MlpProblem): { step: () => Float32Array[] } {
  const { n, hidden: H, classes: C } = p;
  const [w1, b1, w2, b2, w3, b3] = p.params;
  const h1 = new Float32Array(n * H);
  const h2 = new Float32Array(n * H);
  const o = new Float32Array(n * C);
  const go = new Float32Array(n * C);
  const g2 = new Float32Array(n * H);
  const g1 = new Float32Array(n * H);
  const grads = [
    new Float32Array(2 * H),
    new Float32Array(H),
    new Float32Array(H * H),
    new Float32Array(H),
    new Float32Array(H * C),
    new Float32Array(C),
  ];
  const addBiasRelu = (z: Float32Array, bias: Float32Array, width: number, doRelu: boolean) => {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < width; j++) {
        const v = z[i * width + j] + bias[j];
        z[i * width + j] = doRelu ? Math.max(v, 0) : v;
      }
    }
  };
  const colSum = (g: Float32Array, out: Float32Array, width: number) => {
    out.fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < width; j++) out[j] += g[i * width + j];
  };
  return {
    step: () => {
      matmulIKJ(p.x, w1, h1, n, 2, H);
      addBiasRelu(h1, b1, H, true);
      matmulIKJ(h1, w2, h2, n, H, H);
      addBiasRelu(h2, b2, H, true);
      matmulIKJ(h2, w3, o, n, H, C);
      addBiasRelu(o, b3, C, false);
      // d loss / d logits = (softmax - onehot) / n
      for (let i = 0; i < n; i++) {
        let m = -Infinity;
        for (let j = 0; j < C; j++) m = Math.max(m, o[i * C + j]);
        let s = 0;
        for (let j = 0; j < C; j++) s += Math.exp(o[i * C + j] - m);
        for (let j = 0; j < C; j++) go[i * C + j] = (Math.exp(o[i * C + j] - m) / s - p.yOneHot[i * C + j]) / n;
      }
      matmulTA(h2, go, grads[4], H, n, C);
      colSum(go, grads[5], C);
      matmulTB(go, w3, g2, n, C, H);
      for (let k = 0; k < g2.length; k++) if (h2[k] <= 0) g2[k] = 0;
      matmulTA(h1, g2, grads[2], H, n, H);
      colSum(g2, grads[3], H);
      matmulTB(g2, w2, g1, n, H, H);
      for (let k = 0; k < g1.length; k++) if (h1[k] <= 0) g1[k] = 0;
      matmulTA(p.x, g1, grads[0], 2, n, H);
      colSum(g1, grads[1], H);
      return grads;
    },
  };
}
