// The std-log-ratio loss -mean over (N=1 positions, all j) of log(sigma_j / s_j) and its backward.
// Two deterministic passes: grid-stride workgroups write per-workgroup partial sums and counts,
// then one workgroup adds the partials up.

#include "common.wgsl" // workgroupSum2

const WG: u32 = 256u;

struct Params {
  rows: u32,   // positions (B*T)
  d: u32,
  partials: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sigma: array<f32>;
@group(0) @binding(2) var<storage, read> columnStd: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> partialSum: array<f32>;
@group(0) @binding(5) var<storage, read_write> partialCount: array<f32>;
@group(0) @binding(6) var<storage, read> gradOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> count: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

// Workgroup w sums log(sigma / s) over the elements w*WG + lid (+ k * grid) of selected positions
// and counts the selected positions among rows w*WG + lid (+ k * grid). Unselected elements are
// selected out, not multiplied by 0 (their log may be NaN).
@compute @workgroup_size(WG)
fn stdLogRatioPartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let d = params.d;
  let n = params.rows * d;
  let stride = groups.x * WG;
  var s = 0.0;
  for (var i = wid.x * WG + lid; i < n; i += stride) {
    let term = log(sigma[i] / columnStd[i % d]);
    s += select(0.0, term, maskSelects(mask[i / d]));
  }
  var c = 0.0;
  for (var row = wid.x * WG + lid; row < params.rows; row += stride) {
    c += select(0.0, 1.0, maskSelects(mask[row]));
  }
  let r = workgroupSum2(lid, vec2<f32>(s, c));
  if (lid == 0u) {
    partialSum[wid.x] = r.x;
    partialCount[wid.x] = r.y;
  }
}

// One workgroup: out = -sum / (count * d), 0 when nothing is selected; count kept for the backward.
@compute @workgroup_size(WG)
fn stdLogRatioFinalize(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var k = lid; k < params.partials; k += WG) {
    s += partialSum[k];
    c += partialCount[k];
  }
  let r = workgroupSum2(lid, vec2<f32>(s, c));
  if (lid == 0u) {
    let denominator = r.y * f32(params.d);
    out[0] = select(0.0, -r.x / denominator, denominator > 0.0);
    count[0] = r.y;
  }
}

// d/dsigma of -log(sigma / s) / (count * d) = -g / (sigma * count * d) on selected positions.
@compute @workgroup_size(WG)
fn stdLogRatioBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  let n = params.rows * d;
  let denominator = count[0] * f32(d);
  let g = gradOut[0];
  for (var i = gid.x; i < n; i += groups.x * WG) {
    var grad = 0.0;
    if (maskSelects(mask[i / d]) && denominator > 0.0) { grad = -g / (sigma[i] * denominator); }
    out[i] = grad;
  }
}
