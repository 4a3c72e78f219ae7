/**
 * A minimal float64 reverse-mode tape over the twins' `op` / `opBackward` pairs, so that composite
 * references (whole models, the cloak) get their gradients from the same per-op rules the tests
 * already check against finite differences, instead of hand-derived chains.
 */
import { add } from './elementwise';
import { zeros, type NDArray } from './ndarray';

/** A value on the tape. */
export interface RefVar {
  value: NDArray;
  /** Index of the node that made it (-1: a leaf). */
  node: number;
}

/** A twin's forward: tensor arguments first, then plain options. */
// The twins' signatures vary (options, axes, eps); the tape only forwards them.
// biome-ignore lint/suspicious/noExplicitAny: the twins' argument lists differ; the tape only forwards them
export type RefForward = (...args: any[]) => NDArray;
/** A twin's backward: `(g, ...same arguments)` -> gradients of the tensor arguments in order. */
// biome-ignore lint/suspicious/noExplicitAny: as above, the backward receives the forward's arguments
export type RefBackward = (g: NDArray, ...args: any[]) => NDArray[];

interface Node {
  inputs: RefVar[];
  vjp: (g: NDArray) => NDArray[];
}

/** Records float64 ops and runs their backward rules in reverse. */
export class RefTape {
  private nodes: Node[] = [];

  /** A leaf (an input the gradient is asked for, or a constant). */
  leaf(value: NDArray): RefVar {
    return { value, node: -1 };
  }

  /**
   * Applies `forward` to the values of `inputs` (plus non-tensor `extra` arguments) and records
   * `backward(g, ...values, ...extra)`, which returns the gradients of the inputs in order.
   */
  apply(forward: RefForward, backward: RefBackward, inputs: RefVar[], ...extra: unknown[]): RefVar {
    const values = inputs.map((v) => v.value);
    const value = (forward as (...a: unknown[]) => NDArray)(...values, ...extra);
    this.nodes.push({ inputs, vjp: (g) => (backward as (...a: unknown[]) => NDArray[])(g, ...values, ...extra) });
    return { value, node: this.nodes.length - 1 };
  }

  /** Gradients of `sum(output * seed)` with respect to each of `wrt`. */
  gradients(output: RefVar, seed: NDArray, wrt: RefVar[]): NDArray[] {
    const leafGrads = new Map<RefVar, NDArray>();
    const pending = new Map<number, NDArray>();
    if (output.node >= 0) pending.set(output.node, seed);
    else leafGrads.set(output, seed);
    for (let n = this.nodes.length - 1; n >= 0; n--) {
      const g = pending.get(n);
      if (!g) continue;
      const node = this.nodes[n];
      node.vjp(g).forEach((gi, i) => {
        const input = node.inputs[i];
        if (!gi) return;
        if (input.node >= 0) {
          const prev = pending.get(input.node);
          pending.set(input.node, prev ? add(prev, gi) : gi);
        } else {
          const prev = leafGrads.get(input);
          leafGrads.set(input, prev ? add(prev, gi) : gi);
        }
      });
    }
    return wrt.map((v) => leafGrads.get(v) ?? zeros(v.value.shape));
  }
}
