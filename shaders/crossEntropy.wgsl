// Distillation cross-entropy, CE_row = -sum_v softmax(z)_v * log_softmax(zt)_v, averaged over the
// rows a loss mask selects (teacher logits z, student logits zt, both [rows, cols]); and its
// gradient with respect to zt (the teacher side is detached).
//
// Layout (src/losses/rowLayout.ts): each row is cut into `segments` pieces of `segChunks` chunks of
// 4 columns, and one thread works on one piece, grid-stride over the pieces: no barriers (a CPU
// adapter, which runs a workgroup's threads as a loop, pays microseconds for each) and short
// contiguous reads per thread.
//
// The forward reads each logit once (crossEntropyPieces): every thread keeps an online summary of
// its piece (see Online) and stores it. crossEntropyFinish (one workgroup) merges the pieces of
// each row, writes the row statistics for the backward, and the masked mean:
//   CE_row = logsumexp(zt) - sum_v p_v zt_v = log(st) - S / sz
// with both terms relative to the row maxima, so logits of magnitude 1e4 lose nothing to
// cancellation. No softmax row is ever made, so any vocabulary size works.
// Rows whose length is a multiple of 4 read vec4s (the *4 bindings); other rows read scalars (the
// Ragged entry points): same arithmetic, padded chunks.

#include "common.wgsl" // negInf, logSumExpMerge, workgroupSum2

const WG: u32 = 64u;
// The most negative finite f32: the starting maximum of an empty summary. Finite, so that the
// rescaling of a summary's sums never computes inf - inf or 0 * inf.
const LOWEST: f32 = -3.4028234663852886e38;

struct Params {
  rows: u32,
  cols: u32,
  segments: u32,  // pieces per row
  segChunks: u32, // chunks of 4 columns per piece
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> teacher: array<f32>;          // z  [rows, cols] (ragged rows)
@group(0) @binding(2) var<storage, read> student: array<f32>;          // zt [rows, cols] (ragged rows)
@group(0) @binding(1) var<storage, read> teacher4: array<vec4<f32>>;   // z  (cols a multiple of 4)
@group(0) @binding(2) var<storage, read> student4: array<vec4<f32>>;   // zt (cols a multiple of 4)
@group(0) @binding(3) var<storage, read> mask: array<f32>;             // [rows], non-zero selects a row (maskSelects)
@group(0) @binding(4) var<storage, read_write> pieces: array<f32>;     // [rows * segments, 5]: the pieces' Online
@group(0) @binding(5) var<storage, read_write> rowStats: array<f32>;   // [rows, 4]: mz, log sz, mt, log st
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;       // [1]: the mean
@group(0) @binding(7) var<storage, read_write> lossScale: array<f32>;  // [1]: 1 / |selected|, 0 when none
@group(0) @binding(8) var<storage, read> savedStats: array<f32>;       // backward: rowStats of the forward
@group(0) @binding(9) var<storage, read> savedScale: array<f32>;       // backward: lossScale of the forward
@group(0) @binding(10) var<storage, read> grad: array<f32>;            // backward: d(out)/d(loss), one element
@group(0) @binding(11) var<storage, read_write> gradStudent: array<f32>;   // (ragged rows)
@group(0) @binding(11) var<storage, read_write> gradStudent4: array<vec4<f32>>;

// Summary of a set of columns of one row:
//   mz = max z,  sz = sum exp(z - mz),  mt = max zt,  st = sum exp(zt - mt),
//   s  = sum exp(z - mz) * (zt - mt).
// sz == 0 marks the empty set (a non-empty set has sz >= 1: its maximum contributes exp(0)).
struct Online {
  mz: f32,
  sz: f32,
  mt: f32,
  st: f32,
  s: f32,
}

fn emptyOnline() -> Online {
  return Online(LOWEST, 0.0, LOWEST, 0.0, 0.0);
}

fn max4(v: vec4<f32>) -> f32 {
  return max(max(v.x, v.y), max(v.z, v.w));
}

// Adds a chunk of up to four columns (`valid` says which are real). A new maximum rescales the
// sums (once per chunk, and after a row's first chunks rarely, so the rescaling is mostly skipped);
// moving the zt reference from mt to a new ct shifts every earlier (zt - mt) by (ct - mt), weighted
// by sz in total.
fn addChunk(a: Online, z: vec4<f32>, t: vec4<f32>, valid: vec4<bool>) -> Online {
  let lowest = vec4<f32>(LOWEST);
  var r = a;
  let cz = max4(select(lowest, z, valid));
  let ct = max4(select(lowest, t, valid));
  if (cz > r.mz) {
    let f = exp(r.mz - cz);
    r.sz *= f;
    r.s *= f;
    r.mz = cz;
  }
  if (ct > r.mt) {
    r.s -= (ct - r.mt) * r.sz;
    r.st *= exp(r.mt - ct);
    r.mt = ct;
  }
  let ez = select(vec4<f32>(0.0), exp(z - r.mz), valid);
  let et = select(vec4<f32>(0.0), exp(t - r.mt), valid);
  let dt = select(vec4<f32>(0.0), t - r.mt, valid);
  r.sz += dot(ez, vec4<f32>(1.0));
  r.st += dot(et, vec4<f32>(1.0));
  r.s += dot(ez, dt);
  return r;
}

// Union of two disjoint summaries: rescale each to the common maxima.
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

fn storePiece(item: u32, a: Online) {
  let o = 5u * item;
  pieces[o] = a.mz;
  pieces[o + 1u] = a.sz;
  pieces[o + 2u] = a.mt;
  pieces[o + 3u] = a.st;
  pieces[o + 4u] = a.s;
}

// The chunks of piece `item`: [first, end), in the row `row`. Unselected rows are skipped
// entirely (nothing of theirs is read, their pieces are not written).
fn pieceOf(item: u32) -> RowPiece {
  return rowPiece(item, params.segments, params.segChunks, params.cols);
}

@compute @workgroup_size(WG)
fn crossEntropyPieces(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * (params.cols / 4u);
    var acc = emptyOnline();
    for (var c = piece.first; c < piece.end; c++) {
      acc = addChunk(acc, teacher4[base + c], student4[base + c], vec4<bool>(true));
    }
    storePiece(item, acc);
  }
}

@compute @workgroup_size(WG)
fn crossEntropyPiecesRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let cols = params.cols;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * cols;
    var acc = emptyOnline();
    for (var c = piece.first; c < piece.end; c++) {
      var z = vec4<f32>(0.0);
      var t = vec4<f32>(0.0);
      var valid = vec4<bool>(false);
      for (var k = 0u; k < 4u; k++) {
        let col = 4u * c + k;
        if (col < cols) {
          z[k] = teacher[base + col];
          t[k] = student[base + col];
          valid[k] = true;
        }
      }
      acc = addChunk(acc, z, t, valid);
    }
    storePiece(item, acc);
  }
}

// One workgroup: the row statistics and CE_row of every selected row from its pieces, and their
// mean in a fixed order (deterministic). Unselected rows take no part (their pieces were never
// written); an empty selection gives 0, never 0/0, and a lossScale of 0 (zero gradients).
@compute @workgroup_size(WG)
fn crossEntropyFinish(@builtin(local_invocation_index) lid: u32) {
  var total = 0.0;
  var count = 0.0;
  for (var row = lid; row < params.rows; row += WG) {
    if (!maskSelects(mask[row])) { continue; }
    var r = Online(negInf(), 0.0, negInf(), 0.0, 0.0);
    for (var seg = 0u; seg < params.segments; seg++) {
      let o = 5u * (row * params.segments + seg);
      r = merge(r, Online(pieces[o], pieces[o + 1u], pieces[o + 2u], pieces[o + 3u], pieces[o + 4u]));
    }
    let logSt = log(r.st);
    rowStats[4u * row] = r.mz;
    rowStats[4u * row + 1u] = log(r.sz);
    rowStats[4u * row + 2u] = r.mt;
    rowStats[4u * row + 3u] = logSt;
    total += logSt - r.s / r.sz;
    count += 1.0;
  }
  let sums = workgroupSum2(lid, vec2<f32>(total, count));
  if (lid == 0u) {
    let n = sums.y;
    loss[0] = select(0.0, sums.x / n, n > 0.0);
    lossScale[0] = select(0.0, 1.0 / n, n > 0.0);
  }
}

// d(loss)/d(zt) = (softmax(zt) - softmax(z)) * g / |selected| on selected rows, 0 elsewhere, from
// the forward's row statistics; one thread per piece as in the forward, no barriers.
@compute @workgroup_size(WG)
fn crossEntropyBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let scale = grad[0] * savedScale[0];
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let row = piece.row;
    let base = row * (params.cols / 4u);
    if (!maskSelects(mask[row])) {
      for (var c = piece.first; c < piece.end; c++) { gradStudent4[base + c] = vec4<f32>(0.0); }
      continue;
    }
    let mz = savedStats[4u * row];
    let lsz = savedStats[4u * row + 1u];
    let mt = savedStats[4u * row + 2u];
    let lst = savedStats[4u * row + 3u];
    for (var c = piece.first; c < piece.end; c++) {
      let q = exp((student4[base + c] - mt) - lst);
      let p = exp((teacher4[base + c] - mz) - lsz);
      gradStudent4[base + c] = (q - p) * scale;
    }
  }
}

@compute @workgroup_size(WG)
fn crossEntropyBackwardRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let cols = params.cols;
  let scale = grad[0] * savedScale[0];
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let row = piece.row;
    let selected = maskSelects(mask[row]);
    let mz = select(0.0, savedStats[4u * row], selected);
    let lsz = select(0.0, savedStats[4u * row + 1u], selected);
    let mt = select(0.0, savedStats[4u * row + 2u], selected);
    let lst = select(0.0, savedStats[4u * row + 3u], selected);
    for (var col = 4u * piece.first; col < min(cols, 4u * piece.end); col++) {
      let i = row * cols + col;
      var g = 0.0;
      if (selected) { g = (exp((student[i] - mt) - lst) - exp((teacher[i] - mz) - lsz)) * scale; }
      gradStudent[i] = g;
    }
  }
}
