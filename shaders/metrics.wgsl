// Training metrics, computed without a graph: the nearest-neighbour inversion failure rate (NN-FR)
// and the teacher/student top-1 agreement and KL(teacher || student) (LOSSES.md section 5).
// Every result is a handful of scalars, so that a trainer reads a whole step's metrics at once.
//
// NN-FR: the nearest vocabulary row by cosine comes from the catalyst's tiled search in its cosine
// mode (catalyst.wgsl, COSINE); this file counts the failures.
//
// Agreement and KL: one workgroup per row reads both logit rows once, each thread keeping an
// online summary of its slice (maxima, rescaled exp sums, argmaxes and the KL numerator), merged
// in a fixed tree order (deterministic). With p = softmax(z), q = softmax(zs):
//   KL = sum_v p_v ((z_v - mz - log sz) - (zs_v - ms - log ss))
//      = D / sz + log(ss / sz),   D = sum_v exp(z_v - mz) ((z_v - zs_v) - (mz - ms)),
// every term relative to the row maxima, so large logits lose nothing and identical rows give 0
// exactly (each term of D is 0 - 0 and the two exp sums are computed by the same operations).

#include "common.wgsl" // negInf, workgroupSum2, workgroupSum3, logSumExpMerge

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

struct SearchParams {
  positions: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

struct RowParams {
  rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> searchParams: SearchParams;
@group(0) @binding(1) var<uniform> rowParams: RowParams;
@group(0) @binding(8) var<storage, read> nearestIn: array<i32>;           // [P]
@group(0) @binding(9) var<storage, read> ids: array<i32>;                 // [P], i32 or u32 bits
@group(0) @binding(10) var<storage, read> mask: array<f32>;               // [P] or [rows], non-zero selects (maskSelects)
@group(0) @binding(11) var<storage, read_write> outFailures: array<f32>;  // [1]
@group(0) @binding(12) var<storage, read_write> outCount: array<f32>;     // [1]
@group(0) @binding(13) var<storage, read> teacher: array<f32>;            // z  [rows, cols]
@group(0) @binding(14) var<storage, read> student: array<f32>;            // zs [rows, cols]
@group(0) @binding(15) var<storage, read_write> rowStats: array<f32>;     // [rows, 2]: KL, agree (selected rows only)
@group(0) @binding(16) var<storage, read_write> outAgree: array<f32>;     // [1]
@group(0) @binding(17) var<storage, read_write> outKL: array<f32>;        // [1]

// ---------------------------------------------------------------------------------------------
// NN-FR: count the positions whose nearest row is not their token.

// One workgroup, fixed order: failures = selected positions whose nearest row is not their token,
// count = selected positions. Unselected positions are selected out, whatever their ids hold.
@compute @workgroup_size(WG)
fn inversionCount(@builtin(local_invocation_index) lid: u32) {
  var failures = 0.0;
  var count = 0.0;
  for (var p = lid; p < searchParams.positions; p += WG) {
    let selected = maskSelects(mask[p]);
    failures += select(0.0, 1.0, selected && nearestIn[p] != ids[p]);
    count += select(0.0, 1.0, selected);
  }
  let sums = workgroupSum2(lid, vec2<f32>(failures, count));
  if (lid == 0u) {
    outFailures[0] = sums.x;
    outCount[0] = sums.y;
  }
}

// ---------------------------------------------------------------------------------------------
// Top-1 agreement and KL(teacher || student).

// Summary of a set of columns of one row (see the header): mz = max z, sz = sum exp(z - mz),
// ms = max zs, ss = sum exp(zs - ms), dd = D, argZ / argS = first index of each maximum.
// sz == 0 marks the empty set (a non-empty set has sz >= 1: its maximum contributes exp(0)).
struct Summary {
  mz: f32,
  sz: f32,
  ms: f32,
  ss: f32,
  dd: f32,
  argZ: u32,
  argS: u32,
}

fn emptySummary() -> Summary {
  return Summary(negInf(), 0.0, negInf(), 0.0, 0.0, NONE, NONE);
}

// Whether maximum (m, i) of one set beats (mBest, iBest) of another: larger, ties to the smaller
// index (the sets interleave, so the first index on ties needs the comparison).
fn wins(m: f32, i: u32, mBest: f32, iBest: u32) -> bool {
  return m > mBest || (m == mBest && i < iBest);
}

// Union of two disjoint summaries: rescale each to the common maxima. Moving the references of a
// set from (a.mz, a.ms) to (mz, ms) changes each of its D terms by (ms - a.ms) - (mz - a.mz),
// weighted by a.sz in total; computed as one difference so that equal shifts cancel exactly.
fn mergeSummary(a: Summary, b: Summary) -> Summary {
  if (b.sz == 0.0) { return a; }
  if (a.sz == 0.0) { return b; }
  let mz = max(a.mz, b.mz);
  let student = logSumExpMerge(LogSumExp(a.ms, a.ss), LogSumExp(b.ms, b.ss));
  let ms = student.m;
  let fa = exp(a.mz - mz);
  let fb = exp(b.mz - mz);
  let da = a.dd + ((ms - a.ms) - (mz - a.mz)) * a.sz;
  let db = b.dd + ((ms - b.ms) - (mz - b.mz)) * b.sz;
  let argZ = select(a.argZ, b.argZ, wins(b.mz, b.argZ, a.mz, a.argZ));
  let argS = select(a.argS, b.argS, wins(b.ms, b.argS, a.ms, a.argS));
  return Summary(mz, a.sz * fa + b.sz * fb, ms, student.s, da * fa + db * fb, argZ, argS);
}

var<workgroup> rowSelected: u32;
var<workgroup> wMz: array<f32, WG>;
var<workgroup> wSz: array<f32, WG>;
var<workgroup> wMs: array<f32, WG>;
var<workgroup> wSs: array<f32, WG>;
var<workgroup> wDd: array<f32, WG>;
var<workgroup> wArgZ: array<u32, WG>;
var<workgroup> wArgS: array<u32, WG>;

fn storeSummary(i: u32, s: Summary) {
  wMz[i] = s.mz;
  wSz[i] = s.sz;
  wMs[i] = s.ms;
  wSs[i] = s.ss;
  wDd[i] = s.dd;
  wArgZ[i] = s.argZ;
  wArgS[i] = s.argS;
}

fn loadSummary(i: u32) -> Summary {
  return Summary(wMz[i], wSz[i], wMs[i], wSs[i], wDd[i], wArgZ[i], wArgS[i]);
}

// One workgroup per row (grid-stride over rows), its threads striding over the vocabulary, each
// column of both rows read once. Rows outside the mask are skipped: nothing of theirs is read.
@compute @workgroup_size(WG)
fn agreementKLRows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let cols = rowParams.cols;
  for (var row = wid.x; row < rowParams.rows; row += groups.x) {
    if (lid == 0u) { rowSelected = select(0u, 1u, maskSelects(mask[row])); }
    // The barrier inside also keeps thread 0's reads of the previous row's result ahead of the
    // stores below.
    if (workgroupUniformLoad(&rowSelected) == 0u) { continue; }
    let base = row * cols;
    var acc = emptySummary();
    if (lid < cols) {
      acc = Summary(teacher[base + lid], 1.0, student[base + lid], 1.0, 0.0, lid, lid);
    }
    for (var c = lid + WG; c < cols; c += WG) {
      let z = teacher[base + c];
      let zs = student[base + c];
      if (z > acc.mz || zs > acc.ms) {
        // A new maximum (rare past the first columns): move both references at once, so that
        // equal jumps of the two maxima shift D by exactly 0.
        let mz = max(acc.mz, z);
        let ms = max(acc.ms, zs);
        let f = exp(acc.mz - mz);
        let w = exp(z - mz);
        acc.dd = (acc.dd + ((ms - acc.ms) - (mz - acc.mz)) * acc.sz) * f + w * ((z - zs) - (mz - ms));
        acc.sz = acc.sz * f + w;
        acc.ss = acc.ss * exp(acc.ms - ms) + exp(zs - ms);
        acc.argZ = select(acc.argZ, c, z > acc.mz);
        acc.argS = select(acc.argS, c, zs > acc.ms);
        acc.mz = mz;
        acc.ms = ms;
      } else {
        let w = exp(z - acc.mz);
        acc.dd += w * ((z - zs) - (acc.mz - acc.ms));
        acc.sz += w;
        acc.ss += exp(zs - acc.ms);
      }
    }
    storeSummary(lid, acc);
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step = step / 2u) {
      if (lid < step) { storeSummary(lid, mergeSummary(loadSummary(lid), loadSummary(lid + step))); }
      workgroupBarrier();
    }
    if (lid == 0u) {
      let s = loadSummary(0u);
      // KL >= 0; rounding may leave a tiny negative value, which would read as nonsense.
      rowStats[2u * row] = max(s.dd / s.sz + log(s.ss / s.sz), 0.0);
      rowStats[2u * row + 1u] = select(0.0, 1.0, s.argZ == s.argS);
    }
  }
}

// One workgroup, fixed order: agree, sum of KL and count over the selected rows. Unselected rows
// are selected out (their rowStats were never written and may hold anything).
@compute @workgroup_size(WG)
fn agreementKLReduce(@builtin(local_invocation_index) lid: u32) {
  var kl = 0.0;
  var agree = 0.0;
  var count = 0.0;
  for (var r = lid; r < rowParams.rows; r += WG) {
    let selected = maskSelects(mask[r]);
    kl += select(0.0, rowStats[2u * r], selected);
    agree += select(0.0, rowStats[2u * r + 1u], selected);
    count += select(0.0, 1.0, selected);
  }
  let sums = workgroupSum3(lid, vec3<f32>(kl, agree, count));
  if (lid == 0u) {
    outKL[0] = sums.x;
    outAgree[0] = sums.y;
    outCount[0] = sums.z;
  }
}
