/**
 * `AdamW` over `shaders/adamw.wgsl`: `torch.optim.AdamW` (decoupled weight decay, bias-corrected
 * moments) with parameter groups, updating every parameter in place with one fused kernel per
 * parameter. The moments live on the GPU and are owned by the optimizer.
 */
import source from '../../shaders/adamw.wgsl?raw';
import { getContext, type GpuContext } from '../gpu/context';
import { Tensor, fmtShape, keep } from '../tensor/tensor';
import { SgtError } from '../gpu/errors';

const WG = 256;

/** A set of parameters sharing a learning rate and a weight decay. */
export interface ParamGroup {
  /** Leaf tensors (f32) updated in place. */
  params: Tensor[];
  /** Learning rate of this group (default: the optimizer's `lr`). */
  lr?: number;
  /** Decoupled weight decay of this group (default: the optimizer's `weightDecay`). */
  weightDecay?: number;
}

/** Hyperparameters of {@link AdamW} (the defaults are PyTorch's). */
export interface AdamWOptions {
  /** Learning rate, >= 0 (default 1e-3). */
  lr?: number;
  /** Decay rates of the first and second moment estimates, each in [0, 1) (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to sqrt(v_hat) in the denominator, > 0 (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay, >= 0 (default 0.01). */
  weightDecay?: number;
  /**
   * @internal Elements per dispatch for parameters larger than one storage binding (default: from
   * the device's `maxStorageBufferBindingSize`). Tests set it small to exercise the split.
   */
  chunkElements?: number;
}

/** Host copy of one parameter's optimizer state, in the order the parameters were given. */
export interface AdamWParamState {
  /** Shape of the parameter (checked by {@link AdamW.loadState}). */
  shape: number[];
  /** Updates this parameter has received (its bias corrections use it); 0: no state yet. */
  step: number;
  /** First moment estimate (zeros when `step` is 0). */
  m: Float32Array;
  /** Second moment estimate (zeros when `step` is 0). */
  v: Float32Array;
}

/** Everything {@link AdamW.loadState} needs to continue training exactly where `state()` was taken. */
export interface AdamWState {
  /** Number of `step()` calls. */
  step: number;
  /** Learning rate and weight decay of each group (a schedule may have changed the rates). */
  groups: { lr: number; weightDecay: number }[];
  /** One entry per parameter, groups in order, parameters in order within each group. */
  params: AdamWParamState[];
}

interface Slot {
  param: Tensor;
  step: number;
  m: Tensor | null;
  v: Tensor | null;
}

interface Group {
  lr: number;
  weightDecay: number;
  slots: Slot[];
}

function checkLr(where: string, lr: number): void {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) {
    throw new SgtError('INVALID_OPTION', `${where}: option 'lr' must be a finite number >= 0, got ${String(lr)}`);
  }
}

function checkWeightDecay(where: string, wd: number): void {
  if (typeof wd !== 'number' || !Number.isFinite(wd) || wd < 0) {
    throw new SgtError('INVALID_OPTION', `${where}: option 'weightDecay' must be a finite number >= 0, got ${String(wd)}`);
  }
}

/**
 * Splits `n` elements into ranges that each fit one storage binding: an offset binding must be a
 * multiple of `minStorageBufferOffsetAlignment`, so every range but the last is a multiple of it.
 * @internal
 */
export function bindingChunks(ctx: GpuContext, n: number, override?: number): { start: number; count: number }[] {
  const alignElems = Math.max(1, ctx.limits.minStorageBufferOffsetAlignment / 4);
  const limit = override ?? Math.floor(ctx.limits.maxStorageBufferBindingSize / 4);
  const chunk = Math.max(alignElems, Math.floor(limit / alignElems) * alignElems);
  const out: { start: number; count: number }[] = [];
  for (let start = 0; start < n; start += chunk) out.push({ start, count: Math.min(chunk, n - start) });
  return out;
}

/** A byte range of `t`'s buffer holding elements [start, start + count). @internal */
export function elementRange(t: Tensor, start: number, count: number, where: string) {
  return { buffer: t.bufferFor(where), offset: start * 4, size: count * 4 };
}

/**
 * AdamW as `torch.optim.AdamW` (no amsgrad): per parameter with a gradient,
 * `p -= lr * wd * p`, then the bias-corrected Adam update. Parameters without `.grad` are skipped
 * and their state does not advance. `step()` records nothing on the autograd tape and updates each
 * parameter's own GPU buffer, so models and checkpoints holding the tensors see the new values.
 *
 * ```ts
 * const opt = new AdamW([{ params: weights }, { params: norms, weightDecay: 0 }], { lr: 3e-4 });
 * loss.backward(); opt.step(); opt.zeroGrad();
 * ```
 */
export class AdamW {
  /** Decay rates of the moment estimates. */
  readonly betas: readonly [number, number];
  /** Denominator offset. */
  readonly eps: number;
  private readonly groups: Group[];
  private readonly chunkElements: number | undefined;
  private steps = 0;
  private disposed = false;

  /**
   * @param paramGroups Parameters (one group), or groups with their own `lr` / `weightDecay`.
   * @param options Defaults for the groups and the shared hyperparameters (validated).
   */
  constructor(paramGroups: ParamGroup[] | Tensor[], options: AdamWOptions = {}) {
    const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0.01, chunkElements } = options;
    checkLr('AdamW', lr);
    if (!Array.isArray(betas) || betas.length !== 2 || betas.some((b) => typeof b !== 'number' || !(b >= 0 && b < 1))) {
      throw new SgtError('INVALID_OPTION', `AdamW: option 'betas' must be two numbers in [0, 1), got ${JSON.stringify(betas)}`);
    }
    if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) {
      throw new SgtError('INVALID_OPTION', `AdamW: option 'eps' must be a finite number > 0, got ${String(eps)}`);
    }
    checkWeightDecay('AdamW', weightDecay);
    if (chunkElements !== undefined && !(Number.isInteger(chunkElements) && chunkElements > 0)) {
      throw new SgtError('INVALID_OPTION', `AdamW: option 'chunkElements' must be a positive integer, got ${String(chunkElements)}`);
    }
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.chunkElements = chunkElements;

    if (!Array.isArray(paramGroups) || paramGroups.length === 0) {
      throw new SgtError('INVALID_ARGUMENT', 'AdamW: got an empty parameter list');
    }
    const list: ParamGroup[] = paramGroups.every((p) => p instanceof Tensor)
      ? [{ params: paramGroups as Tensor[] }]
      : (paramGroups as ParamGroup[]);
    const seen = new Set<Tensor>();
    this.groups = list.map((g, gi) => {
      if (!g || typeof g !== 'object' || !Array.isArray(g.params)) {
        throw new SgtError('INVALID_ARGUMENT', `AdamW: group ${gi} must be { params: Tensor[], lr?, weightDecay? } (or pass a Tensor[])`);
      }
      const groupLr = g.lr ?? lr;
      const groupWd = g.weightDecay ?? weightDecay;
      checkLr(`AdamW (group ${gi})`, groupLr);
      checkWeightDecay(`AdamW (group ${gi})`, groupWd);
      const slots = g.params.map((p, pi) => {
        const where = `AdamW: group ${gi} parameter ${pi}`;
        if (!(p instanceof Tensor)) throw new SgtError('INVALID_ARGUMENT', `${where} is not a Tensor`);
        p.bufferFor(where);
        if (p.dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', `${where} has dtype ${p.dtype}; expected f32`);
        if (p.gradFn)
          throw new SgtError(
            'INVALID_ARGUMENT',
            `${where} is not a leaf tensor (it was computed by '${p.gradFn.op}'): optimize leaves only`,
          );
        if (seen.has(p)) throw new SgtError('INVALID_ARGUMENT', `${where} appears more than once in the parameter groups`);
        seen.add(p);
        return { param: p, step: 0, m: null, v: null } as Slot;
      });
      return { lr: groupLr, weightDecay: groupWd, slots };
    });
  }

  /** Number of `step()` calls so far (restored by {@link loadState}). */
  get stepCount(): number {
    return this.steps;
  }

  /** Number of parameter groups. */
  get groupCount(): number {
    return this.groups.length;
  }

  /** Learning rate of group `groupIndex`. */
  learningRate(groupIndex = 0): number {
    return this.group(groupIndex, 'learningRate').lr;
  }

  /** Sets the learning rate of one group, or of every group (`'all'`), e.g. from a schedule. */
  setLearningRate(groupIndex: number | 'all', lr: number): void {
    checkLr('AdamW.setLearningRate', lr);
    if (groupIndex === 'all') for (const g of this.groups) g.lr = lr;
    else this.group(groupIndex, 'setLearningRate').lr = lr;
  }

  /**
   * Records one fused update per parameter that has a gradient (nothing is read back; the work
   * runs with the rest of the batch). Parameters whose `.grad` is null are left untouched.
   */
  step(): void {
    this.checkAlive('step');
    const ctx = getContext();
    const [beta1, beta2] = this.betas;
    for (const group of this.groups) {
      for (const slot of group.slots) {
        const p = slot.param;
        const g = p.grad;
        if (!g) continue;
        const where = `AdamW.step (parameter ${fmtShape(p.shape)})`;
        p.bufferFor(where);
        g.bufferFor(`${where} gradient`);
        if (g.size !== p.size || g.shape.some((s, i) => s !== p.shape[i]) || g.rank !== p.rank) {
          throw new SgtError('SHAPE_MISMATCH', `${where}: gradient has shape ${fmtShape(g.shape)}`);
        }
        if (g.dtype !== 'f32') throw new SgtError('DTYPE_MISMATCH', `${where}: gradient has dtype ${g.dtype}; expected f32`);
        if (!slot.m || !slot.v) {
          // The optimizer owns its state: no enclosing scope may free it.
          slot.m = keep(Tensor.empty(p.shape, 'f32', 'AdamW state'));
          slot.v = keep(Tensor.empty(p.shape, 'f32', 'AdamW state'));
        }
        const t = slot.step + 1;
        const bias1 = 1 - beta1 ** t;
        const bias2 = 1 - beta2 ** t;
        const params = new ArrayBuffer(48);
        const u = new Uint32Array(params);
        const f = new Float32Array(params);
        u[1] = slot.step === 0 ? 1 : 0;
        f[2] = 1 - group.lr * group.weightDecay;
        f[3] = beta1;
        f[4] = 1 - beta1;
        f[5] = beta2;
        f[6] = 1 - beta2;
        f[7] = group.lr / bias1;
        f[8] = 1 / Math.sqrt(bias2);
        f[9] = this.eps;
        for (const { start, count } of bindingChunks(ctx, p.size, this.chunkElements)) {
          u[0] = count;
          ctx.dispatch({
            shader: source,
            entryPoint: 'adamwStep',
            label: where,
            resources: {
              param: elementRange(p, start, count, where),
              grad: elementRange(g, start, count, where),
              expAvg: elementRange(slot.m, start, count, where),
              expAvgSq: elementRange(slot.v, start, count, where),
            },
            params, // copied into the uniform arena at once, so the next chunk may reuse it
            workgroups: [ctx.gridSize(count, WG)],
          });
        }
        slot.step = t;
      }
    }
    this.steps++;
  }

  /** Frees every parameter's gradient (`.grad` becomes null), ready for the next backward. */
  zeroGrad(): void {
    for (const group of this.groups) {
      for (const { param } of group.slots) {
        param.grad?.dispose();
        param.grad = null;
      }
    }
  }

  /** Copies the optimizer state to the host (one readback) for a checkpoint. */
  async state(): Promise<AdamWState> {
    this.checkAlive('state');
    const ctx = getContext();
    const slots = this.slots();
    const withState = slots.filter((s) => s.m && s.v);
    const ranges = withState.flatMap((s) => [
      { buffer: s.m!.bufferFor('AdamW.state'), bytes: s.param.size * 4 },
      { buffer: s.v!.bufferFor('AdamW.state'), bytes: s.param.size * 4 },
    ]);
    const data = ranges.length ? await ctx.read(ranges) : [];
    const byslot = new Map<Slot, [Float32Array, Float32Array]>();
    withState.forEach((s, i) => {
      byslot.set(s, [new Float32Array(data[2 * i]), new Float32Array(data[2 * i + 1])]);
    });
    return {
      step: this.steps,
      groups: this.groups.map((g) => ({ lr: g.lr, weightDecay: g.weightDecay })),
      params: slots.map((s) => {
        const mv = byslot.get(s);
        return {
          shape: [...s.param.shape],
          step: mv ? s.step : 0,
          m: mv ? mv[0] : new Float32Array(s.param.size),
          v: mv ? mv[1] : new Float32Array(s.param.size),
        };
      }),
    };
  }

  /**
   * Restores a state taken by {@link state} from an optimizer over parameters of the same shapes
   * in the same order. Everything is checked before anything changes.
   */
  loadState(state: AdamWState): void {
    this.checkAlive('loadState');
    const where = 'AdamW.loadState';
    if (!state || typeof state !== 'object' || !Array.isArray(state.params) || !Array.isArray(state.groups)) {
      throw new SgtError('CHECKPOINT_INVALID', `${where}: expected { step, groups, params } as returned by state()`);
    }
    if (!Number.isInteger(state.step) || state.step < 0)
      throw new SgtError('CHECKPOINT_INVALID', `${where}: 'step' must be an integer >= 0, got ${String(state.step)}`);
    if (state.groups.length !== this.groups.length) {
      throw new SgtError(
        'CHECKPOINT_INVALID',
        `${where}: state has ${state.groups.length} groups; this optimizer has ${this.groups.length}`,
      );
    }
    state.groups.forEach((g, i) => {
      if (!g || typeof g !== 'object')
        throw new SgtError('CHECKPOINT_INVALID', `${where}: group ${i} must be { lr, weightDecay }, got ${String(g)}`);
      checkLr(`${where} (group ${i})`, g.lr);
      checkWeightDecay(`${where} (group ${i})`, g.weightDecay);
    });
    const slots = this.slots();
    if (state.params.length !== slots.length) {
      throw new SgtError('CHECKPOINT_INVALID', `${where}: state has ${state.params.length} parameters; this optimizer has ${slots.length}`);
    }
    state.params.forEach((s, i) => {
      const p = slots[i].param;
      const at = `${where}: parameter ${i}`;
      if (!s || typeof s !== 'object') throw new SgtError('CHECKPOINT_INVALID', `${at} must be { shape, step, m, v }, got ${String(s)}`);
      if (!Array.isArray(s.shape) || s.shape.length !== p.rank || s.shape.some((d, k) => d !== p.shape[k])) {
        throw new SgtError(
          'CHECKPOINT_INVALID',
          `${at} has shape ${fmtShape(p.shape)} but the state has ${Array.isArray(s.shape) ? fmtShape(s.shape) : String(s.shape)}`,
        );
      }
      if (!Number.isInteger(s.step) || s.step < 0)
        throw new SgtError('CHECKPOINT_INVALID', `${at}: 'step' must be an integer >= 0, got ${String(s.step)}`);
      for (const k of ['m', 'v'] as const) {
        if (!(s[k] instanceof Float32Array) || s[k].length !== p.size) {
          throw new SgtError('CHECKPOINT_INVALID', `${at}: '${k}' must be a Float32Array of ${p.size} elements`);
        }
      }
    });

    const ctx = getContext();
    this.steps = state.step;
    state.groups.forEach((g, i) => {
      this.groups[i].lr = g.lr;
      this.groups[i].weightDecay = g.weightDecay;
    });
    state.params.forEach((s, i) => {
      const slot = slots[i];
      slot.step = s.step;
      if (s.step === 0) {
        slot.m?.dispose();
        slot.v?.dispose();
        slot.m = slot.v = null;
        return;
      }
      slot.m ??= keep(Tensor.empty(slot.param.shape, 'f32', 'AdamW state'));
      slot.v ??= keep(Tensor.empty(slot.param.shape, 'f32', 'AdamW state'));
      if (slot.param.size > 0) {
        ctx.write(slot.m.buffer, s.m);
        ctx.write(slot.v.buffer, s.v);
      }
    });
  }

  /** Frees the moment estimates; the optimizer cannot be used afterwards. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const slot of this.slots()) {
      slot.m?.dispose();
      slot.v?.dispose();
      slot.m = slot.v = null;
    }
  }

  private slots(): Slot[] {
    return this.groups.flatMap((g) => g.slots);
  }

  private group(index: number, where: string): Group {
    if (!Number.isInteger(index) || index < 0 || index >= this.groups.length) {
      throw new SgtError('INVALID_ARGUMENT', `AdamW.${where}: group index ${String(index)} out of range (0..${this.groups.length - 1})`);
    }
    return this.groups[index];
  }

  private checkAlive(where: string): void {
    if (this.disposed) throw new SgtError('USE_AFTER_DISPOSE', `AdamW.${where}: optimizer was used after dispose()`);
  }
}
