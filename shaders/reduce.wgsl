// Reductions: sum / max (with argmax) over the last axis of a row-major [rows, cols] view, the
// grid-stride partials of a reduction over all elements and the max backward. (The sum of a
// broadcast gradient back to an operand's shape is in broadcast.wgsl.)

#include "common.wgsl" // negInf, workgroupSum, maxWithIndex, workgroupArgMax

override OP: u32 = 0u;          // 0: sum, 1: max
override INDEXED: bool = false; // max over partials: element indices come from inIndex

const WG: u32 = 256u;

struct Params {
  rows: u32,
  cols: u32,
  scale: f32, // multiplies a sum (1 / count for a mean)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> outIndex: array<u32>;
@group(0) @binding(4) var<storage, read> inIndex: array<u32>;
@group(0) @binding(6) var<storage, read> grad: array<f32>;

// An accumulator: a sum (index 0), or a maximum and the index of its element.
alias Acc = ValueIndex;

fn identity() -> Acc {
  if (OP == 1u) { return Acc(negInf(), 0xffffffffu); }
  return Acc(0.0, 0u);
}

// Max keeps the first index among equal values, so the argmax is deterministic.
fn combine(p: Acc, q: Acc) -> Acc {
  if (OP == 1u) { return maxWithIndex(p, q); }
  return Acc(p.value + q.value, 0u);
}

// The workgroup's accumulators combined, for every thread.
fn workgroupReduce(lid: u32, acc: Acc) -> Acc {
  if (OP == 1u) { return workgroupArgMax(lid, acc); }
  return Acc(workgroupSum(lid, acc.value), 0u);
}

// One workgroup per row (grid-stride over rows), its threads striding over the columns.
@compute @workgroup_size(WG)
fn reduceRows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  for (var row = wid.x; row < params.rows; row += groups.x) {
    var acc = identity();
    let base = row * params.cols;
    for (var c = lid; c < params.cols; c += WG) {
      var idx = c;
      if (INDEXED) { idx = inIndex[base + c]; }
      acc = combine(acc, Acc(x[base + c], idx));
    }
    let r = workgroupReduce(lid, acc);
    if (lid == 0u) {
      if (OP == 1u) { out[row] = r.value; outIndex[row] = r.index; }
      else { out[row] = r.value * params.scale; }
    }
  }
}

// First pass of a reduction over all `cols` elements of one row: workgroup w reduces elements
// w*WG + lid, stepping by the whole grid, into partial w (value and, for max, index).
@compute @workgroup_size(WG)
fn reducePartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  var acc = identity();
  for (var c = wid.x * WG + lid; c < params.cols; c += groups.x * WG) {
    acc = combine(acc, Acc(x[c], c));
  }
  let r = workgroupReduce(lid, acc);
  if (lid == 0u) {
    out[wid.x] = r.value;
    outIndex[wid.x] = r.index;
  }
}

// d(max)/dx: the row's gradient goes to its argmax element, zero elsewhere.
@compute @workgroup_size(WG)
fn maxBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let n = params.rows * params.cols;
  for (var i = gid.x; i < n; i += groups.x * WG) {
    let row = i / params.cols;
    out[i] = select(0.0, grad[row], i % params.cols == inIndex[row]);
  }
}

// Narrow rows: one thread per row, no barriers (see reduceRows for the wide case).
@compute @workgroup_size(WG)
fn reduceRowsNarrow(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    var acc = identity();
    let base = row * params.cols;
    for (var c = 0u; c < params.cols; c++) {
      var idx = c;
      if (INDEXED) { idx = inIndex[base + c]; }
      acc = combine(acc, Acc(x[base + c], idx));
    }
    if (OP == 1u) { out[row] = acc.value; outIndex[row] = acc.index; }
    else { out[row] = acc.value * params.scale; }
  }
}
