/**
 * Reverse-mode autodiff. Every op is registered once with its forward (GPU dispatch) and its
 * backward rule side by side; applying an op records a {@link GradNode} on the output when any
 * input requires grad and grad mode is on. `backward()` walks the graph in reverse topological
 * order, accumulates into `.grad` of leaves, and frees every intermediate it made.
 */
import { Tensor, fmtShape, keep, scope, setBackwardImpl } from '../tensor/tensor';
import { TaskLocal } from '../tensor/taskLocal';
import { SgtError } from '../gpu/errors';

/** Grad mode of the running task (see `TaskLocal`: it follows the task across its `await`s). */
const gradMode = new TaskLocal<boolean>(true);

/** Whether ops currently record the graph (in the running task). */
export function isGradEnabled(): boolean {
  return gradMode.get();
}

/**
 * Runs `fn` without recording the autograd graph (sync or async; an async `fn` until its promise
 * settles). Grad mode belongs to the task that set it: where the platform tracks async context
 * (Node), other tasks running while `fn` awaits still record; in browsers, code that runs while an
 * async `fn` awaits sees grad mode off unless it sets its own (as `Trainer.step` does with
 * {@link enableGrad}).
 */
export function noGrad<R>(fn: () => R): R {
  return gradMode.run(false, fn);
}

/** Runs `fn` with the autograd graph recorded, whatever grad mode its caller had (PyTorch's `enable_grad`). */
export function enableGrad<R>(fn: () => R): R {
  return gradMode.run(true, fn);
}

/** What a backward rule receives. */
export interface BackwardContext<A> {
  /** The op's inputs, as given to the forward. */
  inputs: Tensor[];
  /** The op's output. */
  output: Tensor;
  /** Extra tensors the forward chose to keep. */
  saved: Tensor[];
  /** The op's non-tensor arguments. */
  attrs: A;
}

/** One differentiable op: forward dispatch and backward rule, side by side. */
export interface OpDefinition<A> {
  /** Name used in error messages and the registry. */
  name: string;
  /** Runs the kernel(s); may return extra tensors to keep for the backward. */
  forward: (inputs: Tensor[], attrs: A) => Tensor | { output: Tensor; saved: Tensor[] };
  /** Gradients of each input given the gradient of the output (null: none needed). */
  backward: (gradOutput: Tensor, ctx: BackwardContext<A>) => (Tensor | null)[];
}

/** Every registered op, by name (the playground and the tests enumerate it). */
export const opRegistry = new Map<string, OpDefinition<unknown>>();

/** Registers an op and returns the function that applies it (recording the graph). */
export function defineOp<A>(def: OpDefinition<A>): (inputs: Tensor[], attrs: A) => Tensor {
  if (opRegistry.has(def.name)) throw new SgtError('INVALID_ARGUMENT', `op '${def.name}' is registered twice`);
  opRegistry.set(def.name, def as OpDefinition<unknown>);
  return (inputs, attrs) => {
    for (let i = 0; i < inputs.length; i++) inputs[i].bufferFor(`${def.name} (input ${i})`);
    const result = def.forward(inputs, attrs);
    const output = result instanceof Tensor ? result : result.output;
    const saved = result instanceof Tensor ? [] : result.saved;
    if (gradMode.get() && inputs.some((t) => t.requiresGrad)) {
      output.requiresGrad = true;
      for (const s of saved) keep(s);
      // The graph holds its own reference to every input that receives no gradient (masks, ids,
      // frozen weights), as PyTorch's saved tensors do: the caller may dispose those right after
      // the forward and the backward still finds them. A view shares the buffer (no copy).
      const recorded = inputs.map((t) => (t.requiresGrad ? t : keep(t.view(t.shape))));
      const retained = recorded.filter((t, i) => t !== inputs[i]);
      output.gradFn = {
        op: def.name,
        inputs: recorded,
        saved: [...saved, ...retained],
        backward: (g) => def.backward(g, { inputs: recorded, output, saved, attrs }),
      };
    } else {
      for (const s of saved) s.dispose();
    }
    return output;
  };
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: graphs of long training steps can be deeper than the JS call stack.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const next = inputs[i];
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order.reverse();
}

/**
 * Tensors whose graph node a backward freed: they now look like leaves, and a second backward
 * through them would silently treat them as such (and give them a `.grad` nobody frees).
 */
const graphFreed = new WeakSet<Tensor>();

/** Options of {@link backward}. */
export interface BackwardOptions {
  /** Keep the graph so that backward can run again (default false: the graph is freed). */
  retainGraph?: boolean;
}

/**
 * Accumulates d(root)/d(leaf) into `.grad` of every leaf that requires grad. `root` must have
 * one element unless `seed` (the gradient of the output, same shape) is given.
 */
export function backward(root: Tensor, seed?: Tensor, options: BackwardOptions = {}): void {
  root.bufferFor('backward');
  if (!root.requiresGrad) {
    throw new SgtError(
      'INVALID_ARGUMENT',
      `backward: tensor of shape ${fmtShape(root.shape)} does not require grad (no input of its graph has requiresGrad)`,
    );
  }
  if (seed) {
    if (seed.shape.length !== root.shape.length || seed.shape.some((s, i) => s !== root.shape[i])) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `backward: seed shape ${fmtShape(seed.shape)} must equal the output shape ${fmtShape(root.shape)}`,
      );
    }
    seed.bufferFor('backward (seed)');
  } else if (root.size !== 1) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `backward: output has shape ${fmtShape(root.shape)}; without a seed gradient backward() needs a scalar (one element)`,
    );
  }
  const order = topologicalOrder(root);
  if (order.some((t) => graphFreed.has(t))) {
    throw new SgtError(
      'INVALID_STATE',
      'backward: the graph of this tensor was already freed by an earlier backward() (it is, or reaches, a tensor whose ' +
        'graph that call freed); run the forward again, or pass { retainGraph: true } to the first backward',
    );
  }
  noGrad(() =>
    scope(() => {
      const grads = new Map<Tensor, Tensor>();
      // A backward rule may hand the same tensor to several inputs (add: dA = dB = dOut); a leaf
      // must own its .grad alone, so a tensor already given to a leaf is copied.
      const givenToLeaf = new Set<Tensor>();
      grads.set(root, seed ?? onesLike(root));
      for (const t of order) {
        const g = grads.get(t);
        if (!g) continue;
        grads.delete(t);
        if (!t.gradFn) {
          // A leaf: accumulate into .grad, which the leaf owns from now on.
          if (t.grad) {
            const sum = addTensors(t.grad, g);
            t.grad.dispose();
            t.grad = keep(sum);
          } else {
            t.grad = keep(g === seed || givenToLeaf.has(g) ? copyOf(g) : g);
            givenToLeaf.add(g);
          }
          continue;
        }
        const node = t.gradFn;
        const inputGrads = node.backward(g);
        node.inputs.forEach((input, i) => {
          const gi = inputGrads[i];
          if (!gi || !input.requiresGrad) return;
          if (gi.shape.length !== input.shape.length || gi.shape.some((s, k) => s !== input.shape[k])) {
            throw new SgtError(
              'INTERNAL',
              `backward of ${node.op}: gradient shape ${fmtShape(gi.shape)} != input shape ${fmtShape(input.shape)}`,
            );
          }
          const prev = grads.get(input);
          grads.set(input, prev ? addTensors(prev, gi) : gi);
        });
        if (!options.retainGraph) {
          for (const s of node.saved) s.dispose();
          t.gradFn = null;
          graphFreed.add(t);
        }
      }
    }),
  );
}

let addImpl: ((a: Tensor, b: Tensor) => Tensor) | null = null;
let copyImpl: ((a: Tensor) => Tensor) | null = null;
let onesImpl: ((a: Tensor) => Tensor) | null = null;
/**
 * @internal The ops module provides gradient accumulation and the seed of ones (an import cycle
 * otherwise). The seed is made on the GPU: an upload would split the step's submit in two.
 */
export function setAccumulators(add: (a: Tensor, b: Tensor) => Tensor, copy: (a: Tensor) => Tensor, ones: (a: Tensor) => Tensor): void {
  addImpl = add;
  copyImpl = copy;
  onesImpl = ones;
}
function onesLike(a: Tensor): Tensor {
  return onesImpl!(a);
}
function addTensors(a: Tensor, b: Tensor): Tensor {
  return addImpl!(a, b);
}
function copyOf(a: Tensor): Tensor {
  return copyImpl!(a);
}

setBackwardImpl((t, seed) => backward(t, seed));
