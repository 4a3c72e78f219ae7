// The median-norm penalty mean over N=1 of | ||x + mu||_2 - m |, its backward, and the statistics
// behind m: the row norms of an embedding table and the selection of their median.
//
// Forward is two passes so that the scalar is deterministic without float atomics: 16 threads per
// position (grid-stride) write that position's term and norm, then one workgroup sums the terms
// and counts the selected positions.

#include "common.wgsl" // workgroupSum2

override SQUARED: bool = false; // rowNorms: write ||E_v||^2 instead of ||E_v||
override TABLE_DTYPE: u32 = 0u; // rowNorms: the table's dtype, 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)

const WG: u32 = 256u;

struct Params {
  rows: u32,               // positions (B*T), or table rows V
  d: u32,
  medianFromBuffer: u32,   // 1: m is medianBuffer[0] (a 0-d tensor); 0: m is params.median
  median: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mu: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read> medianBuffer: array<f32>;
@group(0) @binding(5) var<storage, read_write> rowTerm: array<f32>;
@group(0) @binding(6) var<storage, read_write> rowNorm: array<f32>;
@group(0) @binding(7) var<storage, read> gradOut: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
@group(0) @binding(9) var<storage, read_write> count: array<f32>;
@group(0) @binding(10) var<storage, read> table: array<u32>; // rowNorms: f32 bits or packed 16-bit pairs
@group(0) @binding(11) var<storage, read> values: array<f32>;

var<workgroup> scratch: array<f32, WG>; // medianNormRows: 16-lane sums

fn medianValue() -> f32 {
  if (params.medianFromBuffer != 0u) { return medianBuffer[0]; }
  return params.median;
}

// Per position: rowNorm = ||x + mu||, rowTerm = |rowNorm - m| where selected, else 0. A workgroup
// takes 16 positions at a time (grid-stride), 16 threads per position: few barriers per
// position (they are what a software adapter pays for) while a wide row is still shared out.
// Masked positions are computed too and selected out.
const LANES: u32 = 16u;

@compute @workgroup_size(WG)
fn medianNormRows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let d = params.d;
  let lane = lid % LANES;
  let slot = lid / LANES;
  for (var first = wid.x * LANES; first < params.rows; first += groups.x * LANES) {
    let row = first + slot;
    var sq = 0.0;
    if (row < params.rows) {
      for (var j = lane; j < d; j += LANES) {
        let v = x[row * d + j] + mu[row * d + j];
        sq += v * v;
      }
    }
    scratch[lid] = sq;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s / 2u) {
      if (lane < s) { scratch[lid] = scratch[lid] + scratch[lid + s]; }
      workgroupBarrier();
    }
    if (lane == 0u && row < params.rows) {
      let norm = sqrt(scratch[lid]);
      rowNorm[row] = norm;
      rowTerm[row] = select(0.0, abs(norm - medianValue()), maskSelects(mask[row]));
    }
    workgroupBarrier();
  }
}

// One workgroup: out = sum(rowTerm) / count over selected positions (0 when none), count kept for
// the backward.
@compute @workgroup_size(WG)
fn medianNormFinalize(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var row = lid; row < params.rows; row += WG) {
    let selected = maskSelects(mask[row]);
    s += select(0.0, rowTerm[row], selected);
    c += select(0.0, 1.0, selected);
  }
  let meanAndCount = workgroupSelectedMean(lid, s, c);
  if (lid == 0u) {
    out[0] = meanAndCount.x;
    count[0] = meanAndCount.y;
  }
}

// d loss / d(x + mu) = g / count * sign(n - m) * (x + mu) / n on selected positions (0 at n = 0),
// 0 elsewhere; x and mu receive the same gradient.
@compute @workgroup_size(WG)
fn medianNormBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  let n = params.rows * d;
  let c = count[0];
  let g = gradOut[0];
  let m = medianValue();
  for (var i = gid.x; i < n; i += groups.x * WG) {
    let row = i / d;
    let norm = rowNorm[row];
    var grad = 0.0;
    if (maskSelects(mask[row]) && norm > 0.0 && c > 0.0) {
      grad = g * sign(norm - m) * (x[i] + mu[i]) / (norm * c);
    }
    out[i] = grad;
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
