/**
 * RMSNorm (Llama family) and LayerNorm (GPT-2) over the last axis, over `shaders/norm.wgsl`.
 * Differentiable in every tensor argument: the input, the weight and (LayerNorm) the bias.
 */
import source from '../../shaders/norm.wgsl?raw';
import { getContext } from '../gpu/context';
import { defineOp } from '../autograd/engine';
import { Tensor, fmtShape, tensor } from '../tensor/tensor';
import { sumToShape } from './broadcast';
import { checkFloatTensor, requireWeight, weightDtypeCode } from '../tensor/validate';
import { SgtError } from '../gpu/errors';

/** Rows summed by one weight-gradient partial: enough work per thread, enough threads per column. */
const CHUNK_ROWS = 64;
const WG = 64;

interface NormAttrs {
  eps: number;
}

function normParams(rows: number, cols: number, eps: number): ArrayBuffer {
  const buf = new ArrayBuffer(16);
  const u = new Uint32Array(buf);
  u[0] = rows;
  u[1] = cols;
  new Float32Array(buf)[2] = eps;
  u[3] = CHUNK_ROWS;
  return buf;
}

function rowsOf(x: Tensor): [number, number] {
  const cols = x.shape[x.rank - 1];
  return [x.size / cols, cols];
}

/**
 * Runs a row kernel (one thread per row); returns its output. The weight and bias may be packed
 * 16-bit weights: their dtypes pick the kernel variant (`WEIGHT_DTYPE`, `BIAS_DTYPE`).
 */
function rowKernel(entryPoint: string, label: string, x: Tensor, eps: number, out: Tensor, resources: Record<string, Tensor>): Tensor {
  const [rows, cols] = rowsOf(x);
  if (rows === 0) return out;
  const ctx = getContext();
  const res: Record<string, GPUBuffer> = { x: x.buffer };
  for (const [k, t] of Object.entries(resources)) res[k] = t.buffer;
  const constants: Record<string, number> = {};
  if (resources.weight) constants.WEIGHT_DTYPE = weightDtypeCode(resources.weight);
  if (resources.bias) constants.BIAS_DTYPE = weightDtypeCode(resources.bias);
  ctx.dispatch({
    shader: source,
    entryPoint,
    label,
    constants,
    resources: res,
    params: normParams(rows, cols, eps),
    workgroups: [ctx.gridSize(rows, WG)],
  });
  return out;
}

/**
 * Sums over rows for the weight (and bias) gradients: per-(row chunk, column) partials, then a
 * fixed-order reduction over the chunks, so repeated runs give identical bits.
 */
function weightGrads(entryPoint: string, label: string, x: Tensor, stats: Tensor, g: Tensor, withBias: boolean): Tensor[] {
  const [rows, cols] = rowsOf(x);
  const count = withBias ? 2 : 1;
  // No rows: the sums are empty, so the gradients are zeros.
  if (rows === 0) return Array.from({ length: count }, () => tensor(new Float32Array(cols), [cols]));
  const chunks = Math.ceil(rows / CHUNK_ROWS);
  const partials = Array.from({ length: count }, () => Tensor.empty([chunks, cols]));
  const resources: Record<string, GPUBuffer> = { x: x.buffer, savedStats: stats.buffer, grad: g.buffer, dweight: partials[0].buffer };
  if (withBias) resources.dbias = partials[1].buffer;
  const ctx = getContext();
  ctx.dispatch({
    shader: source,
    entryPoint,
    label,
    resources,
    params: normParams(rows, cols, 0),
    workgroups: [ctx.gridSize(chunks * cols, WG)],
  });
  return partials.map((p) => {
    const total = sumToShape(p, [cols]);
    p.dispose();
    return total;
  });
}

const rmsNormOp = defineOp<NormAttrs>({
  name: 'rmsNorm',
  forward: ([x, weight], { eps }) => {
    const [rows] = rowsOf(x);
    const out = Tensor.empty(x.shape);
    const stats = Tensor.empty([rows, 2]);
    rowKernel('rmsNormForward', 'rmsNorm', x, eps, out, { weight, out, stats });
    return { output: out, saved: [stats] };
  },
  backward: (g, { inputs: [x, weight], saved: [stats], attrs: { eps } }) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape);
      rowKernel('rmsNormBackward', 'rmsNorm (backward)', x, eps, dx, { weight, savedStats: stats, grad: g, dx });
    }
    const dw = weight.requiresGrad ? weightGrads('rmsNormWeightGrad', 'rmsNorm (weight gradient)', x, stats, g, false)[0] : null;
    return [dx, dw];
  },
});

const layerNormOp = defineOp<NormAttrs>({
  name: 'layerNorm',
  forward: ([x, weight, bias], { eps }) => {
    const [rows] = rowsOf(x);
    const out = Tensor.empty(x.shape);
    const stats = Tensor.empty([rows, 2]);
    rowKernel('layerNormForward', 'layerNorm', x, eps, out, { weight, bias, out, stats });
    return { output: out, saved: [stats] };
  },
  backward: (g, { inputs: [x, weight, bias], saved: [stats] }) => {
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape);
      rowKernel('layerNormBackward', 'layerNorm (backward)', x, 0, dx, { weight, savedStats: stats, grad: g, dx });
    }
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (weight.requiresGrad || bias.requiresGrad) {
      [dw, db] = weightGrads('layerNormWeightGrad', 'layerNorm (weight gradient)', x, stats, g, true);
      if (!weight.requiresGrad) {
        dw.dispose();
        dw = null;
      }
      if (!bias.requiresGrad) {
        db.dispose();
        db = null;
      }
    }
    return [dx, dw, db];
  },
});

function checkNormArgs(op: string, x: Tensor, params: [string, Tensor][], eps: number): void {
  checkFloatTensor(op, 'x', x);
  if (x.rank === 0 || x.shape[x.rank - 1] === 0) {
    throw new SgtError(
      'SHAPE_MISMATCH',
      `${op}: argument 'x' has shape ${fmtShape(x.shape)}; it needs a non-empty last axis to normalise over`,
    );
  }
  const d = x.shape[x.rank - 1];
  for (const [name, p] of params) {
    if (!(p instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${op}: argument '${name}' must be a Tensor`);
    p.bufferFor(`${op} (argument '${name}')`);
    requireWeight(op, name, p);
    if (p.rank !== 1 || p.shape[0] !== d) {
      throw new SgtError(
        'SHAPE_MISMATCH',
        `${op}: argument '${name}' has shape ${fmtShape(p.shape)}; expected [${d}] (the last axis of x ${fmtShape(x.shape)})`,
      );
    }
  }
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) {
    throw new SgtError('INVALID_ARGUMENT', `${op}: argument 'eps' must be a finite number >= 0, got ${String(eps)}`);
  }
}

/**
 * RMSNorm over the last axis: `x / sqrt(mean(x^2) + eps) * weight`, as in Llama
 * (`LlamaRMSNorm`). `weight` has shape `[x.shape.at(-1)]`, f32 or a packed `bf16` / `f16` weight
 * (unpacked as it loads); `eps` is `rms_norm_eps` (default 1e-6). Gradients flow to `x` and an f32 `weight`.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  checkNormArgs('rmsNorm', x, [['weight', weight]], eps);
  return rmsNormOp([x, weight], { eps });
}

/**
 * LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * weight + bias` with the
 * population variance, as in GPT-2 (`layer_norm_epsilon`, default 1e-5). `weight` and `bias`
 * have shape `[x.shape.at(-1)]`, f32 or packed `bf16` / `f16` weights. Gradients flow to `x` and
 * to an f32 `weight` and `bias`.
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  checkNormArgs(
    'layerNorm',
    x,
    [
      ['weight', weight],
      ['bias', bias],
    ],
    eps,
  );
  return layerNormOp([x, weight, bias], { eps });
}
