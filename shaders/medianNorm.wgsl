// The median-norm penalty mean over N=1 of | ||x + mu||_2 - m |, its backward, and the statistics
// behind m: the row norms of an embedding table and the selection of their median.
//
// Forward is two passes so that the scalar is deterministic without float atomics: one thread per
// piece of a row (src/losses/rowLayout.ts: no barriers, vec4 reads where d is a multiple of 4)
// writes the piece's sum of squares, then one workgroup adds up each selected row's pieces into
// its norm and term, and takes the mean.

#include "common.wgsl" // workgroupSum2

override SQUARED: bool = false; // rowNorms: write ||E_v||^2 instead of ||E_v||
override TABLE_DTYPE: u32 = 0u; // rowNorms: the table's dtype, 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)

const WG: u32 = 256u;

struct Params {
  rows: u32,               // positions (B*T), or table rows V
  d: u32,
  medianFromBuffer: u32,   // 1: m is medianBuffer[0] (a 0-d tensor); 0: m is params.median
  median: f32,
  segments: u32,           // the penalty: pieces per row
  segChunks: u32,          // the penalty: chunks of 4 columns per piece
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mu: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read> medianBuffer: array<f32>;
@group(0) @binding(6) var<storage, read_write> rowNorm: array<f32>;
@group(0) @binding(7) var<storage, read> gradOut: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
@group(0) @binding(9) var<storage, read_write> count: array<f32>;
@group(0) @binding(10) var<storage, read> table: array<u32>; // rowNorms: f32 bits or packed 16-bit pairs
@group(0) @binding(11) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;     // x (d a multiple of 4)
@group(0) @binding(2) var<storage, read> mu4: array<vec4<f32>>;    // mu (d a multiple of 4)
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>; // the backward's gradient (d a multiple of 4)
@group(0) @binding(12) var<storage, read_write> pieces: array<f32>;  // [rows * segments]: sums of squares

fn medianValue() -> f32 {
  if (params.medianFromBuffer != 0u) { return medianBuffer[0]; }
  return params.median;
}

// The chunks of piece `item`: [first, end), in the row `row`.
fn pieceOf(item: u32) -> RowPiece {
  return rowPiece(item, params.segments, params.segChunks, params.d);
}

// Per piece of a selected position: the sum of (x + mu)^2 over its columns. Unselected positions
// are skipped (nothing of theirs is read; their pieces are not written).
@compute @workgroup_size(WG)
fn medianNormPieces(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * (params.d / 4u);
    var sq = 0.0;
    for (var c = piece.first; c < piece.end; c++) {
      let v = x4[base + c] + mu4[base + c];
      sq += dot(v, v);
    }
    pieces[item] = sq;
  }
}

@compute @workgroup_size(WG)
fn medianNormPiecesRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    var sq = 0.0;
    for (var j = 4u * piece.first; j < min(d, 4u * piece.end); j++) {
      let v = x[piece.row * d + j] + mu[piece.row * d + j];
      sq += v * v;
    }
    pieces[item] = sq;
  }
}

// One workgroup: rowNorm = ||x + mu|| of each selected position from its pieces, and out = the
// mean of |rowNorm - m| over them (0 when none), in a fixed order; count kept for the backward.
@compute @workgroup_size(WG)
fn medianNormFinish(@builtin(local_invocation_index) lid: u32) {
  let m = medianValue();
  var s = 0.0;
  var c = 0.0;
  for (var row = lid; row < params.rows; row += WG) {
    if (!maskSelects(mask[row])) { continue; }
    var sq = 0.0;
    for (var seg = 0u; seg < params.segments; seg++) { sq += pieces[row * params.segments + seg]; }
    let norm = sqrt(sq);
    rowNorm[row] = norm;
    s += abs(norm - m);
    c += 1.0;
  }
  let meanAndCount = workgroupSelectedMean(lid, s, c);
  if (lid == 0u) {
    out[0] = meanAndCount.x;
    count[0] = meanAndCount.y;
  }
}

// d loss / d(x + mu) = g / count * sign(n - m) * (x + mu) / n on selected positions (0 at n = 0),
// 0 elsewhere; x and mu receive the same gradient. One thread per piece, as in the forward.
fn backwardFactor(row: u32) -> f32 {
  let c = count[0];
  if (!maskSelects(mask[row]) || c == 0.0) { return 0.0; }
  let norm = rowNorm[row];
  if (!(norm > 0.0)) { return 0.0; }
  return gradOut[0] * sign(norm - medianValue()) / (norm * c);
}

@compute @workgroup_size(WG)
fn medianNormBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let base = piece.row * (params.d / 4u);
    let k = backwardFactor(piece.row);
    if (k == 0.0) {
      // Zeros, not 0 * (x + mu): an unselected position's values may be NaN or infinite.
      for (var c = piece.first; c < piece.end; c++) { out4[base + c] = vec4<f32>(0.0); }
      continue;
    }
    for (var c = piece.first; c < piece.end; c++) { out4[base + c] = k * (x4[base + c] + mu4[base + c]); }
  }
}

@compute @workgroup_size(WG)
fn medianNormBackwardRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let k = backwardFactor(piece.row);
    for (var j = 4u * piece.first; j < min(d, 4u * piece.end); j++) {
      let i = piece.row * d + j;
      out[i] = select(k * (x[i] + mu[i]), 0.0, k == 0.0);
    }
  }
}

// Element e of the table, widened to f32.
fn readTable(e: u32) -> f32 {
  if (TABLE_DTYPE == 0u) { return bitcast<f32>(table[e]); }
  let word = table[e >> 1u];
  let high = (e & 1u) == 1u;
  if (TABLE_DTYPE == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

// ||E_v|| (or its square) of every row of a [rows, d] table, one thread per row: the reads of
// neighbouring threads are d apart, but each thread walks its row sequentially through the cache.
@compute @workgroup_size(WG)
fn rowNorms(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var row = gid.x; row < params.rows; row += groups.x * WG) {
    var sq = 0.0;
    for (var j = 0u; j < d; j++) {
      let v = readTable(row * d + j);
      sq += v * v;
    }
    out[row] = select(sqrt(sq), sq, SQUARED);
  }
}

var<workgroup> histogram: array<atomic<u32>, 256>;
var<workgroup> chosen: vec2<u32>; // (prefix so far, rank left within it)

// The value of the given 0-based rank among values[0..rows) (all >= 0, so their u32 bit patterns
// order like the floats): a radix select, 8 bits per round from the top, each round counting the
// values that share the prefix found so far.
fn selectRank(lid: u32, rank: u32) -> f32 {
  var prefix = 0u;
  var prefixMask = 0u;
  var k = rank;
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&histogram[lid], 0u);
    workgroupBarrier();
    for (var i = lid; i < params.rows; i += WG) {
      let key = bitcast<u32>(values[i]);
      if ((key & prefixMask) == prefix) { atomicAdd(&histogram[(key >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var below = 0u;
      var bucket = 0u;
      for (var b = 0u; b < 256u; b++) {
        let h = atomicLoad(&histogram[b]);
        if (below + h > k) { bucket = b; break; }
        below += h;
      }
      chosen = vec2<u32>(prefix | (bucket << shift), k - below);
    }
    workgroupBarrier();
    prefix = chosen.x;
    k = chosen.y;
    prefixMask = prefixMask | (255u << shift);
    workgroupBarrier();
  }
  return bitcast<f32>(prefix);
}

// One workgroup: out[0] = the median of values[0..rows) (the mean of the two middle ones for an
// even count).
@compute @workgroup_size(WG)
fn medianSelect(@builtin(local_invocation_index) lid: u32) {
  let n = params.rows;
  let upper = selectRank(lid, n / 2u);
  var result = upper;
  if (n % 2u == 0u) {
    let lower = selectRank(lid, n / 2u - 1u);
    result = 0.5 * (lower + upper);
  }
  if (lid == 0u) { out[0] = result; }
}
