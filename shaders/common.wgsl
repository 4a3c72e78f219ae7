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
// logSumExpValue, maskSelects.

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
