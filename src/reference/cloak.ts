/**
 * Float64 twin of `TransformerCloak.forward` and of the transform `xt = where(N, x + mu + sigma
 * eps, x)`, on a {@link RefTape} so its parameter gradients come from the checked per-op rules.
 */
import type { TransformerCloak } from '../models/cloak';
import * as R from './index';
import { attention, attentionBackward } from './attention';
import { layerNorm, layerNormBackward } from './norm';
import { RefTape, type RefVar } from './tape';

type NDArray = R.NDArray;

/** Result of {@link referenceCloakTransform}. */
export interface ReferenceCloakResult {
  mu: NDArray;
  sigma: NDArray;
  xt: NDArray;
  /** Gradients of `sum(xt * seed)` with respect to every parameter, by name. */
  parameterGradients: (seed: NDArray) => Map<string, NDArray>;
}

/**
 * Runs the twin with the cloak's `options` and the given parameter values (host copies of
 * `cloak.namedParameters()`), clean `x` `[B, T, d]`, masks `[B, T]` and the noise draw `eps`.
 */
export function referenceCloakTransform(
  options: TransformerCloak['options'],
  params: Map<string, NDArray>,
  x: NDArray,
  attentionMask: NDArray,
  noiseMask: NDArray,
  eps: NDArray,
): ReferenceCloakResult {
  const tape = new RefTape();
  const leaves = new Map<string, RefVar>();
  for (const [name, value] of params) leaves.set(name, tape.leaf(value));
  const P = (name: string): RefVar => {
    const v = leaves.get(name);
    if (!v) throw new Error(`referenceCloakTransform: parameter '${name}' is missing`);
    return v;
  };
  const { encoderWidth: dc, numLayers, numHeads, sMin, sMax, shallow, meanBound } = options;
  const [B, T] = x.shape;
  const add = (a: RefVar, b: RefVar) => tape.apply(R.add, R.addBackward, [a, b]);
  const mul = (a: RefVar, b: RefVar) => tape.apply(R.mul, R.mulBackward, [a, b]);
  const scale = (a: RefVar, f: number) => tape.apply(R.scale, R.scaleBackward, [a], f);
  const reshape = (a: RefVar, shape: number[]) => tape.apply(R.reshape, R.reshapeBackward, [a], shape);
  const linear = (a: RefVar, name: string) =>
    add(tape.apply(R.matmul, R.matmulBackward, [a, P(`${name}.weight`)], { transposeB: true }), P(`${name}.bias`));
  const norm = (a: RefVar, name: string) => tape.apply(layerNorm, layerNormBackward, [a, P(`${name}.weight`), P(`${name}.bias`)], 1e-5);
  const x0 = tape.leaf(x);
  let e = linear(x0, 'input_projection');
  for (let i = 0; i < numLayers; i++) {
    const l = `encoder.layers.${i}.`;
    const a = norm(e, `${l}norm1`);
    const heads = (name: string) => reshape(linear(a, `${l}self_attn.${name}`), [B, T, numHeads, dc / numHeads]);
    const att = tape.apply(attention, attentionBackward, [heads('q_proj'), heads('k_proj'), heads('v_proj')], {
      causal: false,
      keyMask: attentionMask,
    });
    e = add(e, linear(reshape(att, [B, T, dc]), `${l}self_attn.out_proj`));
    const inner = tape.apply(R.geluTanh, R.geluTanhBackward, [linear(norm(e, `${l}norm2`), `${l}linear1`)]);
    e = add(e, linear(inner, `${l}linear2`));
  }
  e = norm(e, 'encoder.norm');
  let mu = linear(e, 'mu_head');
  if (meanBound !== null) mu = scale(tape.apply(R.tanh, R.tanhBackward, [scale(mu, 1 / meanBound)]), meanBound);
  const sigma = tape.apply(R.sigmoidRange, R.sigmoidRangeBackward, [scale(linear(e, 'rho_head'), 2 / shallow)], sMin, sMax);
  const noisy = add(x0, add(mu, mul(sigma, tape.leaf(eps))));
  // where(N, noisy, x) with N broadcast over features; only the noisy branch carries gradients here.
  const n3 = R.reshape(noiseMask, [B, T, 1]);
  const xt = tape.apply(
    (a: NDArray, b: NDArray) => R.where(n3, a, b),
    (g: NDArray, a: NDArray, b: NDArray) => R.whereBackward(g, n3, a, b),
    [noisy, x0],
  );
  return {
    mu: mu.value,
    sigma: sigma.value,
    xt: xt.value,
    parameterGradients: (seed) => {
      const names = [...leaves.keys()];
      const grads = tape.gradients(
        xt,
        seed,
        names.map((n) => leaves.get(n)!),
      );
      return new Map(names.map((n, i) => [n, grads[i]]));
    },
  };
}
