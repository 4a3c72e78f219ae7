// RMSNorm and LayerNorm over the last axis, and their backward passes. The row kernels give each
// row to one thread (see below); they also save per-row statistics (mean, 1/std) so the backward
// need not recompute them. The weight and bias gradients sum over rows: each thread owns one
// (row chunk, column) partial, summed afterwards by a fixed-order reduction, so the result is
// deterministic (no atomics).

const WG: u32 = 64u;

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

// One row per thread, grid-stride over rows: no workgroup memory and no barrier. A software
// adapter runs each workgroup as a loop over its invocations and pays for every workgroup and
// every barrier (a row per workgroup made RMSNorm of [256, 128] 50x slower on lavapipe and
// 1000x on SwiftShader); a row of a model (d <= a few thousand) is little work for one thread.
// Sums over a row run in four interleaved partials (c % 4), combined at the end.

// Four consecutive elements of x, grad and the weight.
fn x4(at: u32) -> vec4<f32> {
  return vec4<f32>(x[at], x[at + 1u], x[at + 2u], x[at + 3u]);
}
fn grad4(at: u32) -> vec4<f32> {
  return vec4<f32>(grad[at], grad[at + 1u], grad[at + 2u], grad[at + 3u]);
}
fn weight4(c: u32) -> vec4<f32> {
  return vec4<f32>(readWeight(c), readWeight(c + 1u), readWeight(c + 2u), readWeight(c + 3u));
}

// sum_c x_c^2 over the row at `base`.
fn rowSumSquares(base: u32, d: u32) -> f32 {
  var acc = vec4<f32>(0.0);
  let d4 = d & ~3u;
  for (var c = 0u; c < d4; c += 4u) { let v = x4(base + c); acc += v * v; }
  for (var c = d4; c < d; c++) { let v = x[base + c]; acc.x += v * v; }
  return (acc.x + acc.y) + (acc.z + acc.w);
}

// sum_c x_c over the row at `base`.
fn rowSum(base: u32, d: u32) -> f32 {
  var acc = vec4<f32>(0.0);
  let d4 = d & ~3u;
  for (var c = 0u; c < d4; c += 4u) { acc += x4(base + c); }
  for (var c = d4; c < d; c++) { acc.x += x[base + c]; }
  return (acc.x + acc.y) + (acc.z + acc.w);
}

@compute @workgroup_size(WG)
fn rmsNormForward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * d;
    let inv = inverseSqrt(rowSumSquares(base, d) / f32(d) + params.eps);
    for (var c = 0u; c < d; c++) { out[base + c] = x[base + c] * inv * readWeight(c); }
    stats[2u * row] = 0.0;
    stats[2u * row + 1u] = inv;
  }
}

@compute @workgroup_size(WG)
fn layerNormForward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * d;
    let mu = rowSum(base, d) / f32(d);
    // Two passes (mean, then squared deviations): E[x^2] - E[x]^2 cancels badly when |mean| >> std.
    var sq = vec4<f32>(0.0);
    let d4 = d & ~3u;
    for (var c = 0u; c < d4; c += 4u) {
      let e = x4(base + c) - mu;
      sq += e * e;
    }
    for (var c = d4; c < d; c++) { let e = x[base + c] - mu; sq.x += e * e; }
    let inv = inverseSqrt(((sq.x + sq.y) + (sq.z + sq.w)) / f32(d) + params.eps);
    for (var c = 0u; c < d; c++) { out[base + c] = (x[base + c] - mu) * inv * readWeight(c) + readBias(c); }
    stats[2u * row] = mu;
    stats[2u * row + 1u] = inv;
  }
}

// y = x r w with r = (mean(x^2) + eps)^(-1/2) and dr/dx_c = -r^3 x_c / d:
// dx_c = r g_c w_c - x_c r^3 / d * sum_k g_k w_k x_k
@compute @workgroup_size(WG)
fn rmsNormBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * d;
    let inv = savedStats[2u * row + 1u];
    var dot = vec4<f32>(0.0);
    let d4 = d & ~3u;
    for (var c = 0u; c < d4; c += 4u) { dot += grad4(base + c) * weight4(c) * x4(base + c); }
    for (var c = d4; c < d; c++) { dot.x += grad[base + c] * readWeight(c) * x[base + c]; }
    let k = inv * inv * inv * ((dot.x + dot.y) + (dot.z + dot.w)) / f32(d);
    for (var c = 0u; c < d; c++) { dx[base + c] = inv * grad[base + c] * readWeight(c) - x[base + c] * k; }
  }
}

// y = xhat w + b with xhat = (x - mean) r; with h = g w:
// dx = r (h - mean(h) - xhat mean(h xhat))
@compute @workgroup_size(WG)
fn layerNormBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.cols;
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * d;
    let mu = savedStats[2u * row];
    let inv = savedStats[2u * row + 1u];
    var sumH = vec4<f32>(0.0);
    var sumHXhat = vec4<f32>(0.0);
    let d4 = d & ~3u;
    for (var c = 0u; c < d4; c += 4u) {
      let h = grad4(base + c) * weight4(c);
      sumH += h;
      sumHXhat += h * (x4(base + c) - mu) * inv;
    }
    for (var c = d4; c < d; c++) {
      let h = grad[base + c] * readWeight(c);
      sumH.x += h;
      sumHXhat.x += h * (x[base + c] - mu) * inv;
    }
    let means = vec2<f32>((sumH.x + sumH.y) + (sumH.z + sumH.w), (sumHXhat.x + sumHXhat.y) + (sumHXhat.z + sumHXhat.w)) / f32(d);
    for (var c = 0u; c < d; c++) {
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
