// Softmax and log-softmax over the last axis, max-shifted, one workgroup per row (grid-stride
// over rows), and their backward passes. LOG selects log-softmax.

#include "common.wgsl" // negInf, workgroupMax, workgroupSum

override LOG: bool = false;

const WG: u32 = 256u;

struct Params {
  rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;     // forward: input; backward: forward output y
@group(0) @binding(2) var<storage, read> grad: array<f32>;  // backward: gradient of y
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn softmaxForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * params.cols;
    var m = negInf();
    for (var c = lid; c < params.cols; c += WG) { m = max(m, x[base + c]); }
    m = workgroupMax(lid, m);
    var s = 0.0;
    for (var c = lid; c < params.cols; c += WG) { s += exp(x[base + c] - m); }
    s = workgroupSum(lid, s);
    let logS = log(s);
    for (var c = lid; c < params.cols; c += WG) {
      let shifted = x[base + c] - m;
      if (LOG) { out[base + c] = shifted - logS; } else { out[base + c] = exp(shifted) / s; }
    }
  }
}

// softmax:     dx = y * (g - sum(g * y))
// log-softmax: dx = g - exp(y) * sum(g)
@compute @workgroup_size(WG)
fn softmaxBackward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  for (var row = wid.x; row < params.rows; row += groups.x) {
    let base = row * params.cols;
    var s = 0.0;
    for (var c = lid; c < params.cols; c += WG) {
      if (LOG) { s += grad[base + c]; } else { s += grad[base + c] * x[base + c]; }
    }
    s = workgroupSum(lid, s);
    for (var c = lid; c < params.cols; c += WG) {
      let y = x[base + c];
      if (LOG) { out[base + c] = grad[base + c] - exp(y) * s; }
      else { out[base + c] = y * (grad[base + c] - s); }
    }
  }
}

// Narrow rows (a few dozen columns): one thread per row, no workgroup memory and no barriers.
// A workgroup per row would spend its time in barriers; software adapters pay dearly for them.
@compute @workgroup_size(WG)
fn softmaxForwardNarrow(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * params.cols;
    var m = negInf();
    for (var c = 0u; c < params.cols; c++) { m = max(m, x[base + c]); }
    var s = 0.0;
    for (var c = 0u; c < params.cols; c++) { s += exp(x[base + c] - m); }
    let logS = log(s);
    for (var c = 0u; c < params.cols; c++) {
      let shifted = x[base + c] - m;
      if (LOG) { out[base + c] = shifted - logS; } else { out[base + c] = exp(shifted) / s; }
    }
  }
}

@compute @workgroup_size(WG)
fn softmaxBackwardNarrow(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    let base = row * params.cols;
    var s = 0.0;
    for (var c = 0u; c < params.cols; c++) {
      if (LOG) { s += grad[base + c]; } else { s += grad[base + c] * x[base + c]; }
    }
    for (var c = 0u; c < params.cols; c++) {
      let y = x[base + c];
      if (LOG) { out[base + c] = grad[base + c] - exp(y) * s; }
      else { out[base + c] = y * (grad[base + c] - s); }
    }
  }
}
