// Distillation cross-entropy, CE_row = -sum_v softmax(z)_v * log_softmax(zt)_v, averaged over the
// rows a loss mask selects (teacher logits z, student logits zt, both [rows, cols]); and its
// gradient with respect to zt (the teacher side is detached).
//
// The forward reads each row of both logits once. Every thread keeps an online summary of its
// slice of the row (see Online below), the workgroup merges the summaries in a tree, and
//   CE_row = logsumexp(zt) - sum_v p_v zt_v = log(st) - S / sz
// with both terms already relative to the row maxima, so logits of magnitude 1e4 lose nothing to
// cancellation. No softmax row is ever materialised, so any vocabulary size works.

#include "common.wgsl" // negInf, logSumExpAdd, logSumExpMerge

const WG: u32 = 256u;

struct Params {
  rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> teacher: array<f32>;          // z  [rows, cols]
@group(0) @binding(2) var<storage, read> student: array<f32>;          // zt [rows, cols]
@group(0) @binding(3) var<storage, read> mask: array<f32>;             // [rows], non-zero selects a row (maskSelects)
@group(0) @binding(4) var<storage, read_write> rowStats: array<f32>;   // [rows, 4]: mz, log sz, mt, log st
@group(0) @binding(5) var<storage, read_write> rowLoss: array<f32>;    // [rows]: CE_row (selected rows only)
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;       // [1]: the mean
@group(0) @binding(7) var<storage, read_write> lossScale: array<f32>;  // [1]: 1 / |selected|, 0 when none
@group(0) @binding(8) var<storage, read> savedStats: array<f32>;       // backward: rowStats of the forward
@group(0) @binding(9) var<storage, read> savedScale: array<f32>;       // backward: lossScale of the forward
@group(0) @binding(10) var<storage, read> grad: array<f32>;            // backward: d(out)/d(loss), one element
@group(0) @binding(11) var<storage, read_write> gradStudent: array<f32>;

// Summary of a set of columns of one row:
//   mz = max z,  sz = sum exp(z - mz),  mt = max zt,  st = sum exp(zt - mt),
//   s  = sum exp(z - mz) * (zt - mt).
// (mt, st) is the online log-sum-exp of zt (common.wgsl's LogSumExp).
// sz == 0 marks the empty set (a non-empty set has sz >= 1: its maximum contributes exp(0)).
struct Online {
  mz: f32,
  sz: f32,
  mt: f32,
  st: f32,
  s: f32,
}

fn emptyOnline() -> Online {
  return Online(negInf(), 0.0, negInf(), 0.0, 0.0);
}

// Union of two disjoint summaries: rescale each to the common maxima. Moving the zt reference
// from a.mt to mt shifts every (zt - a.mt) by (mt - a.mt), weighted by sz in total.
fn merge(a: Online, b: Online) -> Online {
  if (b.sz == 0.0) { return a; }
  if (a.sz == 0.0) { return b; }
  let mz = max(a.mz, b.mz);
  let student = logSumExpMerge(LogSumExp(a.mt, a.st), LogSumExp(b.mt, b.st));
  let mt = student.m;
  let fa = exp(a.mz - mz);
  let fb = exp(b.mz - mz);
  let sa = a.s - (mt - a.mt) * a.sz;
  let sb = b.s - (mt - b.mt) * b.sz;
  return Online(mz, a.sz * fa + b.sz * fb, mt, student.s, sa * fa + sb * fb);
}

var<workgroup> rowSelected: u32;
var<workgroup> wMz: array<f32, WG>;
var<workgroup> wSz: array<f32, WG>;
var<workgroup> wMt: array<f32, WG>;
var<workgroup> wSt: array<f32, WG>;
var<workgroup> wS: array<f32, WG>;

fn storeOnline(i: u32, o: Online) {
  wMz[i] = o.mz;
  wSz[i] = o.sz;
  wMt[i] = o.mt;
  wSt[i] = o.st;
  wS[i] = o.s;
}

fn loadOnline(i: u32) -> Online {
  return Online(wMz[i], wSz[i], wMt[i], wSt[i], wS[i]);
}

// One workgroup per row (grid-stride over rows), its threads striding over the vocabulary.
// Rows outside the mask are skipped entirely: nothing of theirs is read or written.
@compute @workgroup_size(WG)
fn crossEntropyForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let cols = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    if (lid == 0u) { rowSelected = select(0u, 1u, maskSelects(mask[row])); }
    // The barrier inside also keeps thread 0's reads of the previous row's result ahead of the
    // stores below.
    if (workgroupUniformLoad(&rowSelected) == 0u) { continue; }
    let base = row * cols;
    var acc = emptyOnline();
    if (lid < cols) {
      acc = Online(teacher[base + lid], 1.0, student[base + lid], 1.0, 0.0);
    }
    for (var c = lid + WG; c < cols; c += WG) {
      let zv = teacher[base + c];
      let tv = student[base + c];
      // A new zt maximum rescales st and shifts every earlier (zt - mt) in s.
      if (tv > acc.mt) { acc.s -= (tv - acc.mt) * acc.sz; }
      let student = logSumExpAdd(LogSumExp(acc.mt, acc.st), tv);
      acc.mt = student.m;
      acc.st = student.s;
      if (zv > acc.mz) {
        let f = exp(acc.mz - zv);
        acc.sz = acc.sz * f + 1.0;
        acc.s = acc.s * f + (tv - acc.mt);
        acc.mz = zv;
      } else {
        let w = exp(zv - acc.mz);
        acc.sz += w;
        acc.s += w * (tv - acc.mt);
      }
    }
    storeOnline(lid, acc);
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step = step / 2u) {
      if (lid < step) { storeOnline(lid, merge(loadOnline(lid), loadOnline(lid + step))); }
      workgroupBarrier();
    }
    if (lid == 0u) {
      let r = loadOnline(0u);
      let logSt = log(r.st);
      rowStats[4u * row] = r.mz;
      rowStats[4u * row + 1u] = log(r.sz);
      rowStats[4u * row + 2u] = r.mt;
      rowStats[4u * row + 3u] = logSt;
      rowLoss[row] = logSt - r.s / r.sz;
    }
  }
}

// d(loss)/d(zt) = (softmax(zt) - softmax(z)) * g / |selected| on selected rows, 0 elsewhere,
// from the forward's row statistics: one elementwise pass, grid-stride over all elements.
@compute @workgroup_size(WG)
fn crossEntropyBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let n = params.rows * params.cols;
  let scale = grad[0] * savedScale[0];
  for (var i = gid.x; i < n; i += groups.x * WG) {
    let row = i / params.cols;
    var g = 0.0;
    if (maskSelects(mask[row])) {
      let q = exp((student[i] - savedStats[4u * row + 2u]) - savedStats[4u * row + 3u]);
      let p = exp((teacher[i] - savedStats[4u * row]) - savedStats[4u * row + 1u]);
      g = (q - p) * scale;
    }
    gradStudent[i] = g;
  }
}
