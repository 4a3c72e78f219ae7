// The shared WGSL prelude: infinities, workgroup reductions and the online log-sum-exp, written
// once for every kernel file that says
//
//   #include "common.wgsl"
//
// How an include works (src/gpu/wgslCompose.ts): the `#include` line becomes a comment and this
// file is appended after the including one, once however often it is included. WGSL module-scope
// declarations may be used before they are declared, and the including file's line numbers do
// not move; a compiler message past its last line is reported as `common.wgsl:N`.
//
// Contract for the workgroup reductions:
//   - The including file declares `const WG: u32` (or an `override`), a power of two: the
//     workgroup size of every entry point that calls a reduction, as @workgroup_size(WG).
//     The scratch arrays below are sized by it. Every includer declares WG, even one that
//     reduces nothing (the arrays only count toward the workgroup memory of the entry points
//     that use them).
//   - `lid` is the caller's @builtin(local_invocation_index). Every thread of the workgroup makes
//     the same calls (uniform control flow: the reductions contain barriers).
//   - Each returns the result to every thread and ends with a barrier, so it may be called again
//     at once (the next row). The order is fixed, a tree: for s = WG/2, WG/4, ..., 1 thread i
//     combines its value with thread i + s's. The same inputs give the same bits.
// Names declared here (do not reuse them): negInf, posInf, wgSum, wgValue, wgIndex,
// workgroupSum, workgroupSum2, workgroupSum3, workgroupSum4, workgroupMax, workgroupSelectedMean, ValueIndex,
// maxWithIndex, workgroupArgMax, LogSumExp, logSumExpEmpty, logSumExpAdd, logSumExpMerge,
// logSumExpValue, maskSelects, sinCos, logAccurate, logOfNormalBits, tanhAccurate, LN2_HI, LN2_LO.

// The mask rule of every loss, metric and the attention's key mask: a position is selected iff
// its mask value is not 0 (PyTorch's `mask.bool()`). A mask selects and never weights: 2, 0.5
// and -1 select like 1. Host masks are checked to hold only 0 and 1 (tensor/validate.ts); the
// twins apply the same rule (src/reference/mask.ts).
fn maskSelects(m: f32) -> bool {
  return m != 0.0;
}

// Infinities made at run time: WGSL rejects an infinite constant expression.
fn negInf() -> f32 {
  let bits = 0xff800000u;
  return bitcast<f32>(bits);
}
fn posInf() -> f32 {
  let bits = 0x7f800000u;
  return bitcast<f32>(bits);
}

// ---------------------------------------------------------------------------------------------
// Workgroup reductions (see the contract above).

var<workgroup> wgSum: array<vec4<f32>, WG>;   // 16 * WG bytes, for the sums
var<workgroup> wgValue: array<f32, WG>;       // 4 * WG bytes, for max and argmax
var<workgroup> wgIndex: array<u32, WG>;       // 4 * WG bytes, for argmax

// Up to four sums for the barriers of one. A vec4 adds lane by lane, so each component is summed
// exactly as a scalar sum in the same order would be; unused lanes carry zeros.
fn workgroupSum4(lid: u32, v: vec4<f32>) -> vec4<f32> {
  wgSum[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { wgSum[lid] = wgSum[lid] + wgSum[lid + s]; }
    workgroupBarrier();
  }
  let r = wgSum[0];
  workgroupBarrier();
  return r;
}

fn workgroupSum(lid: u32, v: f32) -> f32 {
  return workgroupSum4(lid, vec4<f32>(v, 0.0, 0.0, 0.0)).x;
}

fn workgroupSum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
  return workgroupSum4(lid, vec4<f32>(v, 0.0, 0.0)).xy;
}

fn workgroupSum3(lid: u32, v: vec3<f32>) -> vec3<f32> {
  return workgroupSum4(lid, vec4<f32>(v, 0.0)).xyz;
}

fn workgroupMax(lid: u32, v: f32) -> f32 {
  wgValue[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { wgValue[lid] = max(wgValue[lid], wgValue[lid + s]); }
    workgroupBarrier();
  }
  let r = wgValue[0];
  workgroupBarrier();
  return r;
}

// A value and the index of the element it came from (0xffffffffu: none yet).
struct ValueIndex {
  value: f32,
  index: u32,
}

// The larger of two (value, index) pairs: ties go to the smaller index, so an argmax is
// deterministic; a NaN in q wins, so that a NaN anywhere reaches the result. The identity is
// ValueIndex(negInf(), 0xffffffffu).
fn maxWithIndex(p: ValueIndex, q: ValueIndex) -> ValueIndex {
  if (q.value > p.value || (q.value == p.value && q.index < p.index) || q.value != q.value) { return q; }
  return p;
}

// The workgroup's maxWithIndex of every thread's pair.
fn workgroupArgMax(lid: u32, v: ValueIndex) -> ValueIndex {
  wgValue[lid] = v.value;
  wgIndex[lid] = v.index;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      let r = maxWithIndex(ValueIndex(wgValue[lid], wgIndex[lid]), ValueIndex(wgValue[lid + s], wgIndex[lid + s]));
      wgValue[lid] = r.value;
      wgIndex[lid] = r.index;
    }
    workgroupBarrier();
  }
  let r = ValueIndex(wgValue[0], wgIndex[0]);
  workgroupBarrier();
  return r;
}

// The mean of the selected terms over the workgroup, and their count: each thread passes the sum
// of its selected terms and how many it selected. The mean is 0 when nothing is selected (an empty
// mask gives a zero loss, LOSSES.md).
fn workgroupSelectedMean(lid: u32, termSum: f32, selectedCount: f32) -> vec2<f32> {
  let r = workgroupSum2(lid, vec2<f32>(termSum, selectedCount));
  return vec2<f32>(select(0.0, r.x / r.y, r.y > 0.0), r.y);
}

// ---------------------------------------------------------------------------------------------
// Online (single-pass) log-sum-exp, max-shifted: m = the largest term so far, s = sum exp(x - m).
// s == 0 marks the empty set (a non-empty one has s >= 1: its maximum contributes exp(0)).

struct LogSumExp {
  m: f32,
  s: f32,
}

fn logSumExpEmpty() -> LogSumExp {
  return LogSumExp(negInf(), 0.0);
}

// Adds the term x; a new maximum rescales the sum to it.
fn logSumExpAdd(a: LogSumExp, x: f32) -> LogSumExp {
  if (x > a.m) { return LogSumExp(x, a.s * exp(a.m - x) + 1.0); }
  return LogSumExp(a.m, a.s + exp(x - a.m));
}

// The union of two disjoint sets: both sums rescaled to the common maximum.
fn logSumExpMerge(a: LogSumExp, b: LogSumExp) -> LogSumExp {
  if (b.s == 0.0) { return a; }
  if (a.s == 0.0) { return b; }
  let m = max(a.m, b.m);
  return LogSumExp(m, a.s * exp(a.m - m) + b.s * exp(b.m - m));
}

// log(sum exp(x)) over the set; -inf for the empty set.
fn logSumExpValue(a: LogSumExp) -> f32 {
  return a.m + log(a.s);
}

// ---------------------------------------------------------------------------------------------
// Accurate transcendental functions. WGSL lets the built-ins be loose (sin and cos to 2^-11
// absolute and only on [-pi, pi], log to 2^-21 absolute near 1, tanh as sinh / cosh), and
// adapters use that room differently: SwiftShader's (Chromium without a GPU) cos and sin move
// randn by 3e-4, its tanh is NaN from |x| = 50 (exp overflows), and both it and lavapipe give
// log and tanh only ~1e-7 absolute near 0, i.e. a 1e-2 relative error at tanh(1e-6). These
// use only +, *, / and exp (a few ulp on both), so every adapter gives the same numbers to f32
// rounding. Checked in ulps against float64 on both adapters (test/node/adapter-parity.test.ts).

// (sin r, cos r) for r in [-pi, pi] (reduce larger angles first), by quarter-turn reduction and
// short Taylor polynomials: accurate to f32 rounding there.
fn sinCos(r: f32) -> vec2<f32> {
  let q = round(r * 0.6366197723675814);
  let y = (r - q * 1.5703125) - q * 0.00048382679489661923;
  let y2 = y * y;
  let sy = y + y * y2 * (-0.16666666666666666 + y2 * (0.008333333333333333 + y2 * (-0.0001984126984126984 + y2 * 2.7557319223985893e-6)));
  let cy = 1.0 + y2 * (-0.5 + y2 * (0.041666666666666664 + y2 * (-0.001388888888888889 + y2 * 2.48015873015873e-5)));
  let k = i32(q) & 3;
  if (k == 0) { return vec2<f32>(sy, cy); }
  if (k == 1) { return vec2<f32>(cy, -sy); }
  if (k == 2) { return vec2<f32>(-sy, -cy); }
  return vec2<f32>(-cy, sy);
}

// ln 2 in two parts: e * LN2_HI is exact for any f32 exponent e (LN2_HI has 16 significant bits).
const LN2_HI: f32 = 0.693145751953125;
const LN2_LO: f32 = 1.428606765330187e-6;

// log(x) to 2 ulp, the special values as IEEE says (log 0 = -inf, log of a negative = NaN, log inf
// = inf; SwiftShader's built-in gives -88 for log 0). Decided on the bits, not on the values, so
// that NaN and subnormals (which an adapter may flush to 0) take the right branch whatever the
// compiler assumes.
fn logAccurate(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  if (bits - 0x00800000u < 0x7f000000u) { return logOfNormalBits(bits); } // 0x00800000 ..= 0x7f7fffff
  if ((bits & 0x7fffffffu) == 0u) { return negInf(); }
  if (bits == 0x7f800000u) { return posInf(); }
  if (bits < 0x00800000u) {
    // A positive subnormal, m * 2^-149 with the integer m = its bits: log m - 149 ln 2.
    return logOfNormalBits(bitcast<u32>(f32(bits))) - 149.0 * LN2_HI - 149.0 * LN2_LO;
  }
  let nanBits = 0x7fc00000u; // a let: WGSL rejects a NaN constant expression
  return bitcast<f32>(nanBits); // a negative number or NaN: NaN
}

// log of the positive normal f32 with these bits. x = m * 2^e with m in [sqrt(1/2), sqrt(2));
// log m = 2 atanh(s), s = (m - 1) / (m + 1), whose odd series needs six terms for |s| <= 0.172;
// m - 1 is exact there.
fn logOfNormalBits(bits: u32) -> f32 {
  var e = f32(i32(bits >> 23u) - 127);
  var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u); // the mantissa, in [1, 2)
  if (m > 1.4142135) {
    m = m * 0.5;
    e = e + 1.0;
  }
  let s = (m - 1.0) / (m + 1.0);
  let s2 = s * s;
  let tail = s2 * (0.6666666666666666 + s2 * (0.4 + s2 * (0.2857142857142857 + s2 * (0.2222222222222222 + s2 * 0.18181818181818182))));
  return e * LN2_HI + ((2.0 * s + s * tail) + e * LN2_LO);
}

// tanh(x) to 2 ulp (Cephes' tanhf): an odd polynomial below |x| = 0.625, where 1 - 2 / (e^2x + 1)
// would cancel; above, that formula with |x| clamped to 10, where tanh is 1 in f32 (it rounds to
// 1 from 9.01), so that e^2x never overflows (inf / inf made the built-in NaN on SwiftShader).
fn tanhAccurate(x: f32) -> f32 {
  let a = min(abs(x), 10.0);
  if (a < 0.625) {
    let s = x * x;
    let p = (((-5.70498872745e-3 * s + 2.06390887954e-2) * s - 5.37397155531e-2) * s + 1.33314422036e-1) * s - 3.33332819422e-1;
    return p * s * x + x;
  }
  let t = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
  return select(t, -t, x < 0.0);
}

// A piece of a row, for the loss kernels that give one thread to each piece (no workgroup memory,
// no barrier; src/losses/rowLayout.ts chooses segments and segChunks): piece `item` is segment
// item % segments of row item / segments, the vec4 chunks [first, end) of a row of rowLength.
struct RowPiece {
  row: u32,
  first: u32,
  end: u32,
}

fn rowPiece(item: u32, segments: u32, segChunks: u32, rowLength: u32) -> RowPiece {
  let row = item / segments;
  let first = (item % segments) * segChunks;
  return RowPiece(row, first, min((rowLength + 3u) / 4u, first + segChunks));
}
