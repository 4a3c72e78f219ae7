// The last pass of a masked-mean loss: one workgroup averages the per-row values of the selected
// rows, in a fixed order (deterministic). Rows outside the mask are selected out — their values
// were never written and may be anything — and an empty selection gives 0, never 0/0. It also
// stores 1/|selected| for the backward (0 when nothing is selected: zero gradients).

#include "common.wgsl" // workgroupSum2

const WG: u32 = 256u;

struct Params {
  rows: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> lossScale: array<f32>;

@compute @workgroup_size(WG)
fn maskedRowMean(@builtin(local_invocation_index) lid: u32) {
  var total = 0.0;
  var count = 0.0;
  for (var r = lid; r < params.rows; r += WG) {
    let selected = maskSelects(mask[r]);
    total += select(0.0, rowLoss[r], selected);
    count += select(0.0, 1.0, selected);
  }
  let sums = workgroupSum2(lid, vec2<f32>(total, count));
  if (lid == 0u) {
    let n = sums.y;
    loss[0] = select(0.0, sums.x / n, n > 0.0);
    lossScale[0] = select(0.0, 1.0 / n, n > 0.0);
  }
}
