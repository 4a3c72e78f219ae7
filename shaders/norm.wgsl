// RMSNorm and LayerNorm over the last axis, and their backward passes. The row kernels give each
// row to one workgroup (grid-stride over rows) and reduce it in workgroup memory; they also save
// per-row statistics (mean, 1/std) so the backward need not recompute them. The weight and bias
// gradients sum over rows: each thread owns one (row chunk, column) partial, summed afterwards by
// a fixed-order reduction, so the result is deterministic (no atomics).

#include "common.wgsl" // workgroupSum, workgroupSum2

const WG: u32 = 256u;

struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
  chunkRows: u32, // rows summed by one weight-gradient partial
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The weight and bias may be packed 16-bit weights (two per word, element 2i low), unpacked as they load.
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// [rows, 2]: mean (0 for RMSNorm) and 1/sqrt(var + eps) (1/rms for RMSNorm).
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read> savedStats: array<f32>;
@group(0) @binding(7) var<storage, read> grad: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;
@group(0) @binding(9) var<storage, read_write> dweight: array<f32>; // [chunks, cols] partials
@group(0) @binding(10) var<storage, read_write> dbias: array<f32>;  // [chunks, cols] partials

override WEIGHT_DTYPE: u32 = 0u; // 0 f32, 1 bf16, 2 f16
override BIAS_DTYPE: u32 = 0u;

// Element e of a weight stored as `dtype` in 32-bit words.
fn unpackWeight(word: u32, e: u32, dtype: u32) -> f32 {
  if (dtype == 0u) { return bitcast<f32>(word); }
  let high = (e & 1u) == 1u;
  if (dtype == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

fn readWeight(c: u32) -> f32 {
  if (WEIGHT_DTYPE == 0u) { return bitcast<f32>(weight[c]); }
  return unpackWeight(weight[c >> 1u], c, WEIGHT_DTYPE);
}

fn readBias(c: u32) -> f32 {
  if (BIAS_DTYPE == 0u) { return bitcast<f32>(bias[c]); }
  return unpackWeight(bias[c >> 1u], c, BIAS_DTYPE);
}

@compute @workgroup_size(WG)
fn rmsNormForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let d = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * d;
    var ss = 0.0;
    for (var c = lid; c < d; c += WG) { let v = x[base + c]; ss += v * v; }
    ss = workgroupSum(lid, ss);
    let inv = inverseSqrt(ss / f32(d) + params.eps);
    for (var c = lid; c < d; c += WG) { out[base + c] = x[base + c] * inv * readWeight(c); }
    if (lid == 0u) {
      stats[2u * row] = 0.0;
      stats[2u * row + 1u] = inv;
    }
  }
}

@compute @workgroup_size(WG)
fn layerNormForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let d = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * d;
    var s = 0.0;
    for (var c = lid; c < d; c += WG) { s += x[base + c]; }
    let mu = workgroupSum(lid, s) / f32(d);
    // Two passes (mean, then squared deviations): E[x^2] - E[x]^2 cancels badly when |mean| >> std.
    var sq = 0.0;
    for (var c = lid; c < d; c += WG) { let e = x[base + c] - mu; sq += e * e; }
    let inv = inverseSqrt(workgroupSum(lid, sq) / f32(d) + params.eps);
    for (var c = lid; c < d; c += WG) { out[base + c] = (x[base + c] - mu) * inv * readWeight(c) + readBias(c); }
    if (lid == 0u) {
      stats[2u * row] = mu;
      stats[2u * row + 1u] = inv;
    }
  }
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2) and dr/dx_c = -r^3 x_c / d:
// dx_c = r g_c w_c - x_c r^3 / d * sum_k g_k w_k x_k
@compute @workgroup_size(WG)
fn rmsNormBackward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let d = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * d;
    let inv = savedStats[2u * row + 1u];
    var dot = 0.0;
    for (var c = lid; c < d; c += WG) { dot += grad[base + c] * readWeight(c) * x[base + c]; }
    dot = workgroupSum(lid, dot);
    let k = inv * inv * inv * dot / f32(d);
    for (var c = lid; c < d; c += WG) { dx[base + c] = inv * grad[base + c] * readWeight(c) - x[base + c] * k; }
  }
}

// y = xhat w + b with xhat = (x - mean) r; with h = g w:
// dx = r (h - mean(h) - xhat mean(h xhat))
@compute @workgroup_size(WG)
fn layerNormBackward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
  let d = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * d;
    let mu = savedStats[2u * row];
    let inv = savedStats[2u * row + 1u];
    var sums = vec2<f32>(0.0, 0.0);
    for (var c = lid; c < d; c += WG) {
      let h = grad[base + c] * readWeight(c);
      sums += vec2<f32>(h, h * (x[base + c] - mu) * inv);
    }
    let means = workgroupSum2(lid, sums) / f32(d);
    for (var c = lid; c < d; c += WG) {
      let xhat = (x[base + c] - mu) * inv;
      dx[base + c] = inv * (grad[base + c] * readWeight(c) - means.x - xhat * means.y);
    }
  }
}

// dweight_c = sum_rows g xhat_c, over one chunk of rows per partial (xhat = x r for RMSNorm,
// where the saved mean is 0).
@compute @workgroup_size(WG)
fn rmsNormWeightGrad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  let chunks = (params.rows + params.chunkRows - 1u) / params.chunkRows;
  for (var item = gid.x; item < chunks * d; item += groups.x * WG) {
    let chunk = item / d;
    let c = item % d;
    let end = min(params.rows, (chunk + 1u) * params.chunkRows);
    var acc = 0.0;
    for (var row = chunk * params.chunkRows; row < end; row++) {
      acc += grad[row * d + c] * x[row * d + c] * savedStats[2u * row + 1u];
    }
    dweight[item] = acc;
  }
}

// dweight_c = sum_rows g xhat_c and dbias_c = sum_rows g, one chunk of rows per partial.
@compute @workgroup_size(WG)
fn layerNormWeightGrad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  let chunks = (params.rows + params.chunkRows - 1u) / params.chunkRows;
  for (var item = gid.x; item < chunks * d; item += groups.x * WG) {
    let chunk = item / d;
    let c = item % d;
    let end = min(params.rows, (chunk + 1u) * params.chunkRows);
    var accW = 0.0;
    var accB = 0.0;
    for (var row = chunk * params.chunkRows; row < end; row++) {
      let g = grad[row * d + c];
      accW += g * (x[row * d + c] - savedStats[2u * row]) * savedStats[2u * row + 1u];
      accB += g;
    }
    dweight[item] = accW;
    dbias[item] = accB;
  }
}
