// The LM head fused with the distillation cross-entropy. With the teacher's and the student's final
// hidden states h, hs ([rows, d], after the final norm) and the head W ([V, d], bound one row block
// [V_i, d] at a time), the logits are z = h W^T (teacher) and zs = hs W^T (student), and
//   CE_row = LSE(zs) - sum_v p_v zs_v,  p = softmax(z),
// averaged over the rows a loss mask selects; its gradient with respect to hs is
//   d CE / d hs_row = sum_v (q_v - p_v) W_v / |selected|,  q = softmax(zs).
// No [rows, V] tensor is ever made. The forward walks the vocabulary in chunks of C = LANES * CPT
// head rows: a workgroup computes the chunk's logits of TR rows in registers (tiled over d through
// workgroup memory) and folds them into an online summary per row (maxima, sums of exponentials
// and the cross term, rescaled when a maximum grows). Each dispatch covers one head block and
// `splits` interleaved sets of chunks; the row summaries persist between dispatches in `state`
// ([splits, rows, 5]), and lmHeadFinish merges them into the per-row loss and statistics.
// The backward recomputes the logits window by window from the saved statistics: lmHeadBackwardProbs
// writes (q - p) * g / |selected| of a window into `diff` ([rows, width]), and lmHeadBackwardGrad adds
// diff * W_window to the student's gradient. Its scratch is [rows, width], never [rows, V].
// The head may be a packed 16-bit weight (bf16 / f16), unpacked as it loads; accumulation is f32.
// The metrics entry points (lmHeadMetricsForward, lmHeadMetricsFinish) walk the vocabulary the same
// way, forward only, for the top-1 agreement and KL(p || q) of the same logits (see `Agreement`);
// lmHeadMetricsFinishRows adds each side's log-sum-exp and argmax (true-target accuracy and NLL).

#include "common.wgsl" // negInf, LogSumExp, logSumExpMerge

const TR: u32 = 16u;     // rows per tile
const LANES: u32 = 16u;  // threads per row: WG = TR * LANES
const WG: u32 = 256u;
const KT: u32 = 16u;     // step through the hidden size
const MAX_CPT: u32 = 16u;
const FIELDS: u32 = 5u;  // floats of one row summary in `state`
const MFIELDS: u32 = 7u; // floats of one metrics row summary in `state`

// Head rows per thread and chunk. The chunk is C = LANES * CPT head rows, and the head tile takes
// KT * C floats of workgroup memory: the wrapper picks CPT (8 or 16) from the device's
// maxComputeWorkgroupStorageSize. CPT >= 8 also makes the head tile large enough (>= FIELDS * WG
// floats) to hold the summaries of the end-of-tile merge.
override CPT: u32 = 8u;
override W_DTYPE: u32 = 0u; // the head's dtype: 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)

struct Params {
  rows: u32,      // N
  d: u32,         // hidden size
  vocab: u32,     // head rows in the bound block (V_i)
  splits: u32,    // forward, finish: row summaries per row (sets of chunks)
  first: u32,     // forward: 1 = first block (no summary stored yet); grad: 1 = overwrite gradStudent
  colStart: u32,  // backward: first head row of the window, within the block
  width: u32,     // backward: head rows in the window (the row length of diff)
  vocabStart: u32, // metrics: the vocabulary index of the bound block's first row
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> teacher: array<f32>;           // h  [rows, d]
@group(0) @binding(2) var<storage, read> student: array<f32>;           // hs [rows, d]
@group(0) @binding(3) var<storage, read> weight: array<u32>;            // W block [vocab, d]: f32 bits or packed pairs
@group(0) @binding(4) var<storage, read> mask: array<f32>;              // [rows], non-zero selects a row (maskSelects)
@group(0) @binding(5) var<storage, read_write> state: array<f32>;       // [splits, rows, FIELDS]
@group(0) @binding(6) var<storage, read_write> rowStats: array<f32>;    // [rows, 4]: tMax, log tSum, sMax, log sSum (metrics: [rows, 2] or [rows, 6])
@group(0) @binding(7) var<storage, read_write> rowLoss: array<f32>;     // [rows] (selected rows only)
@group(0) @binding(8) var<storage, read> savedStats: array<f32>;        // backward: rowStats of the forward
@group(0) @binding(9) var<storage, read> savedScale: array<f32>;        // backward: 1 / |selected| (0 if none)
@group(0) @binding(10) var<storage, read> grad: array<f32>;             // backward: d(out)/d(loss), one element
@group(0) @binding(11) var<storage, read_write> diff: array<f32>;       // backward: [rows, width]
@group(0) @binding(12) var<storage, read_write> gradStudent: array<f32>; // backward: [rows, d]

// Element e of the bound head block, widened to f32.
fn readW(e: u32) -> f32 {
  if (W_DTYPE == 0u) { return bitcast<f32>(weight[e]); }
  let word = weight[e >> 1u];
  let high = (e & 1u) == 1u;
  if (W_DTYPE == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

// Summary of a set of head rows v for one row:
//   tMax = max z,  tSum = sum exp(z - tMax),  sMax = max zs,  sSum = sum exp(zs - sMax),
//   cross = sum exp(z - tMax) * (zs - sMax),
// so that CE_row = log(sSum) - cross / tSum, both terms relative to the maxima.
// (sMax, sSum) is the online log-sum-exp of zs (common.wgsl's LogSumExp). tSum == 0 marks the
// empty set (a non-empty set has tSum >= 1).
struct Online {
  tMax: f32,
  tSum: f32,
  sMax: f32,
  sSum: f32,
  cross: f32,
}

fn emptyOnline() -> Online {
  return Online(negInf(), 0.0, negInf(), 0.0, 0.0);
}

// Union of two disjoint summaries, rescaled to the common maxima. Moving the student reference
// from a.sMax to sMax shifts every (zs - a.sMax) by (sMax - a.sMax), weighted by tSum in total.
fn merge(a: Online, b: Online) -> Online {
  if (b.tSum == 0.0) { return a; }
  if (a.tSum == 0.0) { return b; }
  let tMax = max(a.tMax, b.tMax);
  let s = logSumExpMerge(LogSumExp(a.sMax, a.sSum), LogSumExp(b.sMax, b.sSum));
  let fa = exp(a.tMax - tMax);
  let fb = exp(b.tMax - tMax);
  let ca = a.cross - (s.m - a.sMax) * a.tSum;
  let cb = b.cross - (s.m - b.sMax) * b.tSum;
  return Online(tMax, a.tSum * fa + b.tSum * fb, s.m, s.s, ca * fa + cb * fb);
}

var<workgroup> tileT: array<f32, 256>;                   // teacher rows of the tile, [TR][KT]
var<workgroup> tileS: array<f32, 256>;                   // student rows of the tile, [TR][KT]
var<workgroup> tileW: array<f32, KT * LANES * CPT>;      // head rows of the chunk, k-major [KT][C]
var<workgroup> tileActive: u32;

// A thread's logits of the current tile: head rows col0 + lane + LANES * j, j < CPT.
struct TileLogits {
  t: array<f32, MAX_CPT>, // teacher
  s: array<f32, MAX_CPT>, // student
}

// Whether any row of the tile starting at row0 is selected (thread 0 writes, every thread reads).
fn tileSelected(row0: u32, lid: u32) -> bool {
  if (lid == 0u) {
    var found = 0u;
    for (var r = row0; r < min(row0 + TR, params.rows); r++) {
      if (maskSelects(mask[r])) { found = 1u; }
    }
    tileActive = found;
  }
  // The barrier inside also keeps the previous tile's reads of tileActive ahead of this store.
  return workgroupUniformLoad(&tileActive) != 0u;
}

// This thread's logits of rows row0.. and head rows col0.. of the bound block (0 outside it).
// Every thread of the workgroup must call it (it has barriers).
fn tileLogits(row0: u32, col0: u32, lid: u32) -> TileLogits {
  var z: TileLogits;
  let C = LANES * CPT;
  let d = params.d;
  let r = lid / LANES;
  let lane = lid % LANES;
  for (var j = 0u; j < CPT; j++) {
    z.t[j] = 0.0;
    z.s[j] = 0.0;
  }
  for (var k0 = 0u; k0 < d; k0 += KT) {
    // The hidden tiles: one element of each per thread (WG == TR * KT).
    let hr = row0 + lid / KT;
    let hk = k0 + lid % KT;
    var tv = 0.0;
    var sv = 0.0;
    if (hr < params.rows && hk < d) {
      tv = teacher[hr * d + hk];
      sv = student[hr * d + hk];
    }
    tileT[lid] = tv;
    tileS[lid] = sv;
    // The head tile: KT * C elements, CPT per thread; consecutive threads read consecutive k.
    for (var e = 0u; e < CPT; e++) {
      let idx = lid + e * WG;
      let c = idx / KT;
      let k = idx % KT;
      var w = 0.0;
      if (col0 + c < params.vocab && k0 + k < d) { w = readW((col0 + c) * d + k0 + k); }
      tileW[k * C + c] = w;
    }
    workgroupBarrier();
    for (var k = 0u; k < KT; k++) {
      let a = tileT[r * KT + k];
      let b = tileS[r * KT + k];
      for (var j = 0u; j < CPT; j++) {
        let w = tileW[k * C + lane + LANES * j];
        z.t[j] = fma(a, w, z.t[j]);
        z.s[j] = fma(b, w, z.s[j]);
      }
    }
    workgroupBarrier();
  }
  return z;
}

fn storeOnline(i: u32, o: Online) {
  tileW[i] = o.tMax;
  tileW[WG + i] = o.tSum;
  tileW[2u * WG + i] = o.sMax;
  tileW[3u * WG + i] = o.sSum;
  tileW[4u * WG + i] = o.cross;
}

fn loadOnline(i: u32) -> Online {
  return Online(tileW[i], tileW[WG + i], tileW[2u * WG + i], tileW[3u * WG + i], tileW[4u * WG + i]);
}

// Forward over one head block: workgroup (x, y) takes row tiles x, x + groups.x, ... and the
// block's chunks y, y + splits, ...; the summaries of its rows (merged with what earlier blocks
// left in `state`, unless params.first) go to state[y]. Tiles with no selected row compute nothing.
@compute @workgroup_size(WG)
fn lmHeadForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let C = LANES * CPT;
  let tiles = (params.rows + TR - 1u) / TR;
  let chunks = (params.vocab + C - 1u) / C;
  let r = lid / LANES;
  let lane = lid % LANES;
  let split = wid.y;
  for (var tile = wid.x; tile < tiles; tile += groups.x) {
    let row0 = tile * TR;
    var acc = emptyOnline();
    if (tileSelected(row0, lid)) {
      for (var chunk = split; chunk < chunks; chunk += params.splits) {
        let col0 = chunk * C;
        let z = tileLogits(row0, col0, lid);
        // Summary of this thread's head rows of the chunk, then one merge into the running one.
        var n = 0u;
        var tMax = negInf();
        var sMax = negInf();
        for (var j = 0u; j < CPT; j++) {
          if (col0 + lane + LANES * j < params.vocab) {
            tMax = max(tMax, z.t[j]);
            sMax = max(sMax, z.s[j]);
            n++;
          }
        }
        if (n > 0u) {
          var part = Online(tMax, 0.0, sMax, 0.0, 0.0);
          for (var j = 0u; j < n; j++) {
            let e = exp(z.t[j] - tMax);
            part.tSum += e;
            part.sSum += exp(z.s[j] - sMax);
            part.cross += e * (z.s[j] - sMax);
          }
          acc = merge(acc, part);
        }
      }
    }
    // Merge the LANES summaries of each row (a tree in tileW, free once tileLogits has returned).
    storeOnline(lid, acc);
    workgroupBarrier();
    for (var step = LANES / 2u; step > 0u; step = step / 2u) {
      if (lane < step) { storeOnline(lid, merge(loadOnline(lid), loadOnline(lid + step))); }
      workgroupBarrier();
    }
    let row = row0 + r;
    if (lane == 0u && row < params.rows) {
      var total = loadOnline(lid);
      let at = (split * params.rows + row) * FIELDS;
      if (params.first == 0u) {
        total = merge(Online(state[at], state[at + 1u], state[at + 2u], state[at + 3u], state[at + 4u]), total);
      }
      state[at] = total.tMax;
      state[at + 1u] = total.tSum;
      state[at + 2u] = total.sMax;
      state[at + 3u] = total.sSum;
      state[at + 4u] = total.cross;
    }
  }
}

// Merges the `splits` summaries of each selected row into its loss and its statistics.
@compute @workgroup_size(WG)
fn lmHeadFinish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    if (!maskSelects(mask[row])) { continue; }
    var acc = emptyOnline();
    for (var s = 0u; s < params.splits; s++) {
      let at = (s * params.rows + row) * FIELDS;
      acc = merge(acc, Online(state[at], state[at + 1u], state[at + 2u], state[at + 3u], state[at + 4u]));
    }
    let logS = log(acc.sSum);
    rowStats[4u * row] = acc.tMax;
    rowStats[4u * row + 1u] = log(acc.tSum);
    rowStats[4u * row + 2u] = acc.sMax;
    rowStats[4u * row + 3u] = logS;
    rowLoss[row] = logS - acc.cross / acc.tSum;
  }
}

// Backward, first half: diff[row, c] = (q - p) * g / |selected| for head rows colStart + c of the
// bound block, c < width; exactly 0 on unselected rows (selected out, not multiplied: their
// hidden states may hold anything). Workgroup (x, y): row tiles x, ... and chunks y, ... of the window.
@compute @workgroup_size(WG)
fn lmHeadBackwardProbs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
  let C = LANES * CPT;
  let tiles = (params.rows + TR - 1u) / TR;
  let chunks = (params.width + C - 1u) / C;
  let scale = grad[0] * savedScale[0];
  let r = lid / LANES;
  let lane = lid % LANES;
  for (var tile = wid.x; tile < tiles; tile += groups.x) {
    let row0 = tile * TR;
    let row = row0 + r;
    let anySelected = tileSelected(row0, lid);
    var selected = false;
    var tMax = 0.0;
    var logT = 0.0;
    var sMax = 0.0;
    var logS = 0.0;
    if (row < params.rows) {
      selected = maskSelects(mask[row]);
      if (selected) {
        tMax = savedStats[4u * row];
        logT = savedStats[4u * row + 1u];
        sMax = savedStats[4u * row + 2u];
        logS = savedStats[4u * row + 3u];
      }
    }
    for (var chunk = wid.y; chunk < chunks; chunk += groups.y) {
      var z: TileLogits; // zeros: stays so when no row of the tile is selected
      if (anySelected) { z = tileLogits(row0, params.colStart + chunk * C, lid); }
      for (var j = 0u; j < CPT; j++) {
        let c = chunk * C + lane + LANES * j;
        if (row < params.rows && c < params.width) {
          var g = 0.0;
          if (selected) {
            let q = exp((z.s[j] - sMax) - logS);
            let p = exp((z.t[j] - tMax) - logT);
            g = (q - p) * scale;
          }
          diff[row * params.width + c] = g;
        }
      }
    }
  }
}

// Backward, second half: gradStudent (+)= diff [rows, width] * W[colStart .. colStart + width) [width, d],
// tiled like matmul.wgsl: each 16x16 workgroup a 64x64 block of the gradient, each thread 4x4.
const GT: u32 = 64u;
var<workgroup> gradA: array<f32, 1024>; // diff tile, k-major [KT][GT]
var<workgroup> gradB: array<f32, 1024>; // head tile, k-major [KT][GT]

@compute @workgroup_size(16, 16)
fn lmHeadBackwardGrad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) flat: u32) {
  let d = params.d;
  let width = params.width;
  let rowTiles = (params.rows + GT - 1u) / GT;
  let colTiles = (d + GT - 1u) / GT;
  for (var ty = wid.y; ty < rowTiles; ty += groups.y) {
    for (var tx = wid.x; tx < colTiles; tx += groups.x) {
      let row0 = ty * GT;
      let col0 = tx * GT;
      var acc: array<f32, 16>;
      for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
      for (var k0 = 0u; k0 < width; k0 += KT) {
        for (var e = 0u; e < 4u; e++) {
          let idx = flat + e * 256u;
          // diff: consecutive threads read consecutive k of one row.
          let m = idx / KT;
          let ka = idx % KT;
          var av = 0.0;
          if (row0 + m < params.rows && k0 + ka < width) { av = diff[(row0 + m) * width + k0 + ka]; }
          gradA[ka * GT + m] = av;
          // head rows: consecutive threads read consecutive hidden columns of one head row.
          let kb = idx / GT;
          let n = idx % GT;
          var bv = 0.0;
          if (k0 + kb < width && col0 + n < d) { bv = readW((params.colStart + k0 + kb) * d + col0 + n); }
          gradB[kb * GT + n] = bv;
        }
        workgroupBarrier();
        for (var k = 0u; k < KT; k++) {
          var av: array<f32, 4>;
          var bv: array<f32, 4>;
          for (var i = 0u; i < 4u; i++) {
            av[i] = gradA[k * GT + lid.y + 16u * i];
            bv[i] = gradB[k * GT + lid.x + 16u * i];
          }
          for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]); }
          }
        }
        workgroupBarrier();
      }
      for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
          let col = col0 + lid.x + 16u * j;
          if (row < params.rows && col < d) {
            let at = row * d + col;
            if (params.first != 0u) { gradStudent[at] = acc[i * 4u + j]; } else { gradStudent[at] += acc[i * 4u + j]; }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Metrics: top-1 agreement and KL(p || q), forward only, over the same tiles as lmHeadForward.

// Summary of a set of head rows v for one row, as metrics.wgsl keeps it for materialised logits:
//   tMax, tSum, sMax, sSum as in `Online`,
//   dd = sum exp(z - tMax) ((z - tMax) - (zs - sMax)),
//   tArg, sArg = the vocabulary index of each maximum (the first on ties), as f32 (exact below 2^24),
// so that KL = dd / tSum + log(sSum / tSum) (every term relative to the maxima: identical teacher
// and student rows give 0 exactly) and the row agrees when tArg == sArg. tSum == 0 marks the empty set.
struct Agreement {
  tMax: f32,
  tSum: f32,
  sMax: f32,
  sSum: f32,
  dd: f32,
  tArg: f32,
  sArg: f32,
}

fn emptyAgreement() -> Agreement {
  return Agreement(negInf(), 0.0, negInf(), 0.0, 0.0, 0.0, 0.0);
}

// Whether maximum (m, i) beats (mBest, iBest): larger, ties to the smaller vocabulary index.
fn wins(m: f32, i: f32, mBest: f32, iBest: f32) -> bool {
  return m > mBest || (m == mBest && i < iBest);
}

// Union of two disjoint summaries. Moving a set's references from (a.tMax, a.sMax) to the common
// (tMax, sMax) changes each of its dd terms by (sMax - a.sMax) - (tMax - a.tMax), weighted by a.tSum.
fn mergeAgreement(a: Agreement, b: Agreement) -> Agreement {
  if (b.tSum == 0.0) { return a; }
  if (a.tSum == 0.0) { return b; }
  let tMax = max(a.tMax, b.tMax);
  let s = logSumExpMerge(LogSumExp(a.sMax, a.sSum), LogSumExp(b.sMax, b.sSum));
  let fa = exp(a.tMax - tMax);
  let fb = exp(b.tMax - tMax);
  let da = a.dd + ((s.m - a.sMax) - (tMax - a.tMax)) * a.tSum;
  let db = b.dd + ((s.m - b.sMax) - (tMax - b.tMax)) * b.tSum;
  let tArg = select(a.tArg, b.tArg, wins(b.tMax, b.tArg, a.tMax, a.tArg));
  let sArg = select(a.sArg, b.sArg, wins(b.sMax, b.sArg, a.sMax, a.sArg));
  return Agreement(tMax, a.tSum * fa + b.tSum * fb, s.m, s.s, da * fa + db * fb, tArg, sArg);
}

fn storeAgreement(i: u32, o: Agreement) {
  tileW[i] = o.tMax;
  tileW[WG + i] = o.tSum;
  tileW[2u * WG + i] = o.sMax;
  tileW[3u * WG + i] = o.sSum;
  tileW[4u * WG + i] = o.dd;
  tileW[5u * WG + i] = o.tArg;
  tileW[6u * WG + i] = o.sArg;
}

fn loadAgreement(i: u32) -> Agreement {
  return Agreement(tileW[i], tileW[WG + i], tileW[2u * WG + i], tileW[3u * WG + i], tileW[4u * WG + i], tileW[5u * WG + i],
                   tileW[6u * WG + i]);
}

fn stateAgreement(at: u32) -> Agreement {
  return Agreement(state[at], state[at + 1u], state[at + 2u], state[at + 3u], state[at + 4u], state[at + 5u], state[at + 6u]);
}

// The summary of this thread's head rows of one chunk (col0 within the bound block).
fn chunkAgreement(z: TileLogits, col0: u32, lane: u32) -> Agreement {
  var n = 0u;
  var tMax = negInf();
  var sMax = negInf();
  var tArg = 0u;
  var sArg = 0u;
  // Columns grow with j: a strictly larger value keeps the first index of each maximum.
  for (var j = 0u; j < CPT; j++) {
    let c = col0 + lane + LANES * j;
    if (c < params.vocab) {
      if (n == 0u || z.t[j] > tMax) { tMax = z.t[j]; tArg = c; }
      if (n == 0u || z.s[j] > sMax) { sMax = z.s[j]; sArg = c; }
      n++;
    }
  }
  if (n == 0u) { return emptyAgreement(); }
  let base = f32(params.vocabStart);
  var part = Agreement(tMax, 0.0, sMax, 0.0, 0.0, base + f32(tArg), base + f32(sArg));
  for (var j = 0u; j < n; j++) {
    let e = exp(z.t[j] - tMax);
    part.tSum += e;
    part.sSum += exp(z.s[j] - sMax);
    part.dd += e * ((z.t[j] - tMax) - (z.s[j] - sMax));
  }
  return part;
}

// Forward over one head block, as lmHeadForward (the same grid, tiles and chunk sets), keeping
// `Agreement` summaries ([splits, rows, MFIELDS] in `state`).
@compute @workgroup_size(WG)
fn lmHeadMetricsForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
  let C = LANES * CPT;
  let tiles = (params.rows + TR - 1u) / TR;
  let chunks = (params.vocab + C - 1u) / C;
  let r = lid / LANES;
  let lane = lid % LANES;
  let split = wid.y;
  for (var tile = wid.x; tile < tiles; tile += groups.x) {
    let row0 = tile * TR;
    var acc = emptyAgreement();
    if (tileSelected(row0, lid)) {
      for (var chunk = split; chunk < chunks; chunk += params.splits) {
        let col0 = chunk * C;
        acc = mergeAgreement(acc, chunkAgreement(tileLogits(row0, col0, lid), col0, lane));
      }
    }
    storeAgreement(lid, acc);
    workgroupBarrier();
    for (var step = LANES / 2u; step > 0u; step = step / 2u) {
      if (lane < step) { storeAgreement(lid, mergeAgreement(loadAgreement(lid), loadAgreement(lid + step))); }
      workgroupBarrier();
    }
    let row = row0 + r;
    if (lane == 0u && row < params.rows) {
      var total = loadAgreement(lid);
      let at = (split * params.rows + row) * MFIELDS;
      // Earlier blocks hold smaller vocabulary indices: they go first, so ties keep the first index.
      if (params.first == 0u) { total = mergeAgreement(stateAgreement(at), total); }
      state[at] = total.tMax;
      state[at + 1u] = total.tSum;
      state[at + 2u] = total.sMax;
      state[at + 3u] = total.sSum;
      state[at + 4u] = total.dd;
      state[at + 5u] = total.tArg;
      state[at + 6u] = total.sArg;
    }
  }
}

// Merges the `splits` summaries of each selected row into rowStats [rows, 2]: KL(p || q) (clamped
// at 0 against rounding) and 1 when the argmaxes agree; unselected rows are not written.
@compute @workgroup_size(WG)
fn lmHeadMetricsFinish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    if (!maskSelects(mask[row])) { continue; }
    var acc = emptyAgreement();
    for (var s = 0u; s < params.splits; s++) {
      acc = mergeAgreement(acc, stateAgreement((s * params.rows + row) * MFIELDS));
    }
    rowStats[2u * row] = max(acc.dd / acc.tSum + log(acc.sSum / acc.tSum), 0.0);
    rowStats[2u * row + 1u] = select(0.0, 1.0, acc.tArg == acc.sArg);
  }
}

// lmHeadMetricsFinish, with what a true-target utility needs besides: rowStats [rows, 6] holds, per
// selected row, KL(p || q), 1 when the argmaxes agree, LSE(z), LSE(zs) (so that the NLL of a target
// t is LSE - z_t, z_t from one head row) and the teacher's and the student's argmax (f32, exact
// below 2^24). Unselected rows are not written.
@compute @workgroup_size(WG)
fn lmHeadMetricsFinishRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    if (!maskSelects(mask[row])) { continue; }
    var acc = emptyAgreement();
    for (var s = 0u; s < params.splits; s++) {
      acc = mergeAgreement(acc, stateAgreement((s * params.rows + row) * MFIELDS));
    }
    let at = 6u * row;
    rowStats[at] = max(acc.dd / acc.tSum + log(acc.sSum / acc.tSum), 0.0);
    rowStats[at + 1u] = select(0.0, 1.0, acc.tArg == acc.sArg);
    rowStats[at + 2u] = acc.tMax + logAccurate(acc.tSum);
    rowStats[at + 3u] = acc.sMax + logAccurate(acc.sSum);
    rowStats[at + 4u] = acc.tArg;
    rowStats[at + 5u] = acc.sArg;
  }
}
