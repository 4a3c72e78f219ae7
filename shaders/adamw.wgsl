// The optimizer kernel family: the fused AdamW step (one pass reads p, g, m, v once and writes
// p, m, v), and global-norm gradient clipping (per-tensor sums of squares into grid-stride
// partials, one final pass that turns them into the norm and the clip factor, and an in-place
// scale of each gradient by that factor read from the GPU, so the step never waits on a readback).
//
// Every resource variable has its own binding number: an entry point binds only the variables it
// statically uses, and distinct numbers keep any two from colliding.

#include "common.wgsl" // workgroupSum

const WG: u32 = 256u;

// Scalars of one AdamW dispatch. The host derives them in float64 from the hyperparameters and the
// parameter's own step count, so the kernel does no pow() and rounds each only once.
struct AdamWParams {
  n: u32,
  // 1 on a parameter's first step: m and v then start from zero without reading their buffers,
  // which come from the pool uncleared (and 0 * NaN garbage would not be zero).
  first: u32,
  decay: f32,          // 1 - lr * weightDecay (decoupled weight decay, applied before the update)
  beta1: f32,
  oneMinusBeta1: f32,
  beta2: f32,
  oneMinusBeta2: f32,
  stepSize: f32,       // lr / (1 - beta1^t)
  invSqrtBias2: f32,   // 1 / sqrt(1 - beta2^t)
  eps: f32,
  _pad0: u32,
  _pad1: u32,
}

struct ClipParams {
  n: u32,        // elements of this gradient (chunk), or partials in the final pass
  offset: u32,   // where this dispatch's partials start in `partials`
  maxNorm: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> adamw: AdamWParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> expAvg: array<f32>;
@group(0) @binding(4) var<storage, read_write> expAvgSq: array<f32>;

@group(0) @binding(5) var<uniform> clip: ClipParams;
@group(0) @binding(6) var<storage, read> clipSource: array<f32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;
@group(0) @binding(8) var<storage, read_write> totalNorm: array<f32>;
@group(0) @binding(9) var<storage, read_write> clipFactor: array<f32>;
@group(0) @binding(10) var<storage, read_write> clipTarget: array<f32>;

// torch.optim.AdamW for one element:
//   p <- p * (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
@compute @workgroup_size(WG)
fn adamwStep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < adamw.n; i += groups.x * WG) {
    let g = grad[i];
    var m = 0.0;
    var v = 0.0;
    if (adamw.first == 0u) {
      m = expAvg[i];
      v = expAvgSq[i];
    }
    m = adamw.beta1 * m + adamw.oneMinusBeta1 * g;
    v = adamw.beta2 * v + adamw.oneMinusBeta2 * g * g;
    let denom = sqrt(v) * adamw.invSqrtBias2 + adamw.eps;
    param[i] = param[i] * adamw.decay - adamw.stepSize * m / denom;
    expAvg[i] = m;
    expAvgSq[i] = v;
  }
}

// Sum of squares of one gradient: workgroup w strides over the tensor and writes partial
// offset + w. Fixed partial slots (no atomics) keep the norm deterministic.
@compute @workgroup_size(WG)
fn sumSquaresPartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < clip.n; i += groups.x * WG) {
    let g = clipSource[i];
    acc += g * g;
  }
  let total = workgroupSum(lid, acc);
  if (lid == 0u) { partials[clip.offset + wid.x] = total; }
}

// One workgroup: the norm of all gradients from every partial, and the factor that clips it,
// min(1, maxNorm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_.
@compute @workgroup_size(WG)
fn clipNormFinal(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < clip.n; i += WG) { acc += partials[i]; }
  let total = workgroupSum(lid, acc);
  if (lid == 0u) {
    let norm = sqrt(total);
    totalNorm[0] = norm;
    clipFactor[0] = min(1.0, clip.maxNorm / (norm + 1e-6));
  }
}

// g <- g * factor in place (the factor stays on the GPU).
@compute @workgroup_size(WG)
fn scaleByClipFactor(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let factor = clipFactor[0];
  for (var i = gid.x; i < clip.n; i += groups.x * WG) {
    clipTarget[i] = clipTarget[i] * factor;
  }
}
