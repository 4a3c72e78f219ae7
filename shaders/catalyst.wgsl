// The inverse-L2 power-law catalyst mean over N=1 of (l / max(dmin, 1e-8))^p, dmin the distance
// from xt to its nearest vocabulary row, and its backward; and the nearest-row search behind it
// (also used, excluding each row itself, for the Voronoi distances of an embedding table).
//
// The search never materialises the positions x V distance matrix: a workgroup takes a tile of
// up to 64 query rows, walks the table in tiles of TV rows (staged with the queries TK features at a
// time in workgroup memory, as in a tiled matmul), and keeps a running (min, argmin) per query of
// |b|^2 - 2 a.b (|a|^2 is the same for every b), or of -a.b / |b| for the cosine search. The table is split across the grid's y axis so
// that a few queries against a large vocabulary still fill the device; a second pass combines the
// splits and recomputes the winner's distance exactly as ||a - b|| (no cancellation).
//
// A table larger than one storage binding comes as row blocks, bound one at a time: each block's
// search reports global row indices (rowOffset + local), and its combine pass merges the block's
// winner into the results of the blocks before it (by the same search value, ties to the smaller
// index), so the blocks find what one table would. The table may be a packed 16-bit weight
// (bf16 / f16), unpacked as it loads.

#include "common.wgsl" // posInf, workgroupSum2

override EXCLUDE_SELF: bool = false; // queries are the table itself: skip row p for query p
// Nearest by cosine instead (the training metrics' NN-FR): minimise -a.b / |b|; |a| is the same for
// every candidate, so it never divides. A zero-norm row scores +inf: it wins only when every row is
// zero (the first candidate always beats "none"), and the combine pass computes no distance.
override COSINE: bool = false;
// Query rows per thread (1, 2 or 4): a query tile holds 16 * ROWS_PER_THREAD rows, so that a
// handful of queries does not pay for 64.
override ROWS_PER_THREAD: u32 = 4u;
override TABLE_DTYPE: u32 = 0u; // 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)

const WG: u32 = 256u;
const TV: u32 = 64u;  // table rows per tile (4 per thread column)
const TK: u32 = 16u;  // features staged at a time
const NONE: u32 = 0xffffffffu;

struct SearchParams {
  positions: u32,
  vocab: u32,     // rows of the bound block
  d: u32,
  splits: u32,
  rowOffset: u32, // the table row of the block's first row
  first: u32,     // combine: 1 = the first block (nothing to merge with yet)
  _pad0: u32,
  _pad1: u32,
}

struct LossParams {
  positions: u32,
  d: u32,
  rowOffset: u32, // backward: the table row of the bound block's first row
  blockRows: u32, // backward: rows of the bound block
  length: f32,    // l, the characteristic length
  exponent: f32,  // p, the exponent of decay
  first: u32,     // backward: 1 = the first block (writes every position; later blocks only theirs)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: SearchParams;
@group(0) @binding(1) var<uniform> lossParams: LossParams;
@group(0) @binding(2) var<storage, read> queries: array<f32>;       // [P, d] (xt)
@group(0) @binding(3) var<storage, read> table: array<u32>;         // one row block [vocab, d] of E: f32 bits or packed pairs
@group(0) @binding(4) var<storage, read> tableNorm: array<f32>;     // [V]: |E_v|^2 (L2) or |E_v| (COSINE)
@group(0) @binding(5) var<storage, read_write> partialValue: array<f32>; // [splits, P]
@group(0) @binding(6) var<storage, read_write> partialIndex: array<u32>; // [splits, P]
@group(0) @binding(7) var<storage, read_write> nearestIndex: array<u32>;    // [P]
@group(0) @binding(8) var<storage, read_write> nearestDistance: array<f32>; // [P]
@group(0) @binding(9) var<storage, read> mask: array<f32>;
@group(0) @binding(10) var<storage, read_write> out: array<f32>;
@group(0) @binding(11) var<storage, read_write> count: array<f32>;
@group(0) @binding(12) var<storage, read> gradOut: array<f32>;
@group(0) @binding(13) var<storage, read> nearestIndexIn: array<u32>;
@group(0) @binding(14) var<storage, read> nearestDistanceIn: array<f32>;
@group(0) @binding(15) var<storage, read_write> nearestValue: array<f32>;   // [P]: the winner's search value (merging blocks)

var<workgroup> tileA: array<f32, 1024>;  // [TK][TP], TP = 16 * ROWS_PER_THREAD <= 64
var<workgroup> tileB: array<f32, 1024>;  // [TK][TV]
var<workgroup> redValue: array<f32, WG>;
var<workgroup> redIndex: array<u32, WG>;

// Element e of the bound table block, widened to f32.
fn readTable(e: u32) -> f32 {
  if (TABLE_DTYPE == 0u) { return bitcast<f32>(table[e]); }
  let word = table[e >> 1u];
  let high = (e & 1u) == 1u;
  if (TABLE_DTYPE == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

// Whether candidate (v, i) beats (best, bestI): smaller value, ties to the smaller index.
fn better(v: f32, i: u32, best: f32, bestI: u32) -> bool {
  return i != NONE && (bestI == NONE || v < best || (v == best && i < bestI));
}

// Grid: x strides over query tiles, y = the split; split s takes table tiles s, s + splits, ...
// Thread (ty, tx) = (lid / 16, lid % 16) owns queries ty + 16 r (r < ROWS_PER_THREAD) and table
// rows tx + 16 c (c < 4) of each tile: a 4 x 4 register block, as in the tiled matmul.
@compute @workgroup_size(WG)
fn nearestPartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let P = params.positions;
  let V = params.vocab;
  let d = params.d;
  let TP = 16u * ROWS_PER_THREAD;
  let tx = lid % 16u;
  let ty = lid / 16u;
  let queryTiles = (P + TP - 1u) / TP;
  let tableTiles = (V + TV - 1u) / TV;
  for (var qt = wid.x; qt < queryTiles; qt += groups.x) {
    let q0 = qt * TP;
    var best: array<f32, 4>;
    var bestI: array<u32, 4>;
    for (var r = 0u; r < 4u; r++) {
      best[r] = posInf();
      bestI[r] = NONE;
    }
    for (var vt = wid.y; vt < tableTiles; vt += params.splits) {
      let v0 = vt * TV;
      var acc: array<f32, 16>;
      for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
      for (var k0 = 0u; k0 < d; k0 += TK) {
        // Stage 16 features of the query and table tiles; out-of-range entries are 0.
        for (var e = lid; e < TP * TK; e += WG) {
          let p = e / TK;
          let k = e % TK;
          var a = 0.0;
          if (q0 + p < P && k0 + k < d) { a = queries[(q0 + p) * d + k0 + k]; }
          tileA[k * TP + p] = a;
        }
        for (var e = lid; e < TV * TK; e += WG) {
          let v = e / TK;
          let k = e % TK;
          var b = 0.0;
          if (v0 + v < V && k0 + k < d) { b = readTable((v0 + v) * d + k0 + k); }
          tileB[k * TV + v] = b;
        }
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
          var av: array<f32, 4>;
          var bv: array<f32, 4>;
          for (var r = 0u; r < ROWS_PER_THREAD; r++) { av[r] = tileA[k * TP + ty + 16u * r]; }
          for (var c = 0u; c < 4u; c++) { bv[c] = tileB[k * TV + tx + 16u * c]; }
          for (var r = 0u; r < ROWS_PER_THREAD; r++) {
            for (var c = 0u; c < 4u; c++) { acc[4u * r + c] += av[r] * bv[c]; }
          }
        }
        workgroupBarrier();
      }
      for (var c = 0u; c < 4u; c++) {
        let v = v0 + tx + 16u * c;
        if (v < V) {
          let n = tableNorm[v];
          for (var r = 0u; r < ROWS_PER_THREAD; r++) {
            var value = n - 2.0 * acc[4u * r + c];
            if (COSINE) { value = select(posInf(), -acc[4u * r + c] / n, n > 0.0); }
            let skip = EXCLUDE_SELF && v + params.rowOffset == q0 + ty + 16u * r;
            if (!skip && better(value, v, best[r], bestI[r])) {
              best[r] = value;
              bestI[r] = v;
            }
          }
        }
      }
    }
    // Combine the 16 threads that share each query.
    for (var r = 0u; r < ROWS_PER_THREAD; r++) {
      redValue[lid] = best[r];
      redIndex[lid] = bestI[r];
      workgroupBarrier();
      let p = q0 + ty + 16u * r;
      if (tx == 0u && p < P) {
        var v = redValue[lid];
        var i = redIndex[lid];
        for (var t = 1u; t < 16u; t++) {
          if (better(redValue[lid + t], redIndex[lid + t], v, i)) {
            v = redValue[lid + t];
            i = redIndex[lid + t];
          }
        }
        partialValue[wid.y * P + p] = v;
        partialIndex[wid.y * P + p] = i;
      }
      workgroupBarrier();
    }
  }
}

// One thread per query: the best of the bound block's splits, as a table row (+ rowOffset); unless
// this is the first block, kept only if it beats the earlier blocks' winner; then (L2) the winning
// row's exact distance (+inf if none).
@compute @workgroup_size(WG)
fn nearestCombine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let P = params.positions;
  let d = params.d;
  for (var p = gid.x; p < P; p += groups.x * WG) {
    var v = posInf();
    var i = NONE;
    for (var s = 0u; s < params.splits; s++) {
      let sv = partialValue[s * P + p];
      let si = partialIndex[s * P + p];
      if (better(sv, si, v, i)) {
        v = sv;
        i = si;
      }
    }
    let row = select(i + params.rowOffset, NONE, i == NONE);
    if (params.first == 0u && !better(v, row, nearestValue[p], nearestIndex[p])) { continue; }
    var dist = posInf();
    if (!COSINE && i != NONE) {
      var sq = 0.0;
      for (var j = 0u; j < d; j++) {
        let diff = queries[p * d + j] - readTable(i * d + j);
        sq += diff * diff;
      }
      dist = sqrt(sq);
    }
    nearestIndex[p] = row;
    nearestDistance[p] = dist;
    nearestValue[p] = v;
  }
}

fn term(dist: f32) -> f32 {
  return pow(lossParams.length / max(dist, 1e-8), lossParams.exponent);
}

// One workgroup: out = mean over selected positions of (l / max(dmin, 1e-8))^p (0 when none);
// the count is kept for the backward. Unselected positions are selected out (their distance may
// be 0, whose term is huge).
@compute @workgroup_size(WG)
fn catalystFinalize(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var p = lid; p < lossParams.positions; p += WG) {
    let selected = maskSelects(mask[p]);
    s += select(0.0, term(nearestDistanceIn[p]), selected);
    c += select(0.0, 1.0, selected);
  }
  let meanAndCount = workgroupSelectedMean(lid, s, c);
  if (lid == 0u) {
    out[0] = meanAndCount.x;
    count[0] = meanAndCount.y;
  }
}

// d (l/d)^p / dxt = -p (l/d)^p / d^2 * (xt - E_v), v the nearest row found by the forward; 0 where
// d is at the floor or the position is not selected. One dispatch per table block: a position
// whose nearest row lies in the bound block gets its gradient; the first block's dispatch also
// writes the zeros (and the positions of later blocks, which those overwrite).
@compute @workgroup_size(WG)
fn catalystBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = lossParams.d;
  let n = lossParams.positions * d;
  let c = count[0];
  let g = gradOut[0];
  for (var i = gid.x; i < n; i += groups.x * WG) {
    let p = i / d;
    let dist = nearestDistanceIn[p];
    let v = nearestIndexIn[p];
    // In this block (NONE, the largest u32, is in none: v - rowOffset wraps or exceeds blockRows).
    let inBlock = v != NONE && v >= lossParams.rowOffset && v - lossParams.rowOffset < lossParams.blockRows;
    if (!inBlock && lossParams.first == 0u) { continue; }
    var grad = 0.0;
    if (inBlock && maskSelects(mask[p]) && c > 0.0 && dist > 1e-8) {
      // Divided by d twice separately: term / d^2 alone may overflow where the product does not.
      let factor = -lossParams.exponent * term(dist) / dist;
      grad = g / c * factor * ((queries[i] - readTable((v - lossParams.rowOffset) * d + i % d)) / dist);
    }
    out[i] = grad;
  }
}
