// Monte Carlo mutual information between the two halves of a micro-batch (LOSSES.md section 3):
// each transformed embedding xt[i,t] of one half is scored under the Gaussian mixture whose
// components are the other half's (x[k,t] + mu[k,t], sigma[k,t]) at the same position t.
//
// Four entry points:
//   miRows      one thread per row (b,t): its centre x + mu (for the forward and the backward) and
//               sum_j log sigma (its log-determinant as a component, its Hcond as a query), once
//               per row instead of once per (query, component) pair.
//   miForward   one thread per query (i,t): the log densities under the other half's components,
//               a max-shifted log-sum-exp, the term and its inclusion flag, and the
//               responsibilities w[i,t,k].
//   miReduce    one workgroup: the mean of the included terms in a fixed order (deterministic).
//   miBackward  one thread per piece of SEG columns of a row (r,t), for each element (r,t,j): row r
//               as a query (through xt and Hcond) and row r as a component of every query of the
//               other half (through its centre and scale).
//               Each output element has exactly one writer, so no atomics are needed.
//
// Layout of `saved` (f32), written by the forward and read by the backward:
//   [0, B*T*H)                 responsibilities w[(i*T + t)*H + kk], 0 where the pair is excluded
//   [termOffset, +B*T)         term(i,t), 0 where (i,t) is dropped
//   [flagOffset, +B*T)         1 where (i,t) counts in the mean, else 0
//   [statsOffset, +2)          sum of the terms, number of included (i,t)
//   [statsOffset + 2, +B*T)    values of sigma[i,t,:] that are not > 0 where sigma[i,t] is read
//                              (miReduce adds them to the data check: reported at the next readback)
//   [logDetOffset, +B*T)       sum_j log sigma[b,t,j] (miRows)
// Keeping everything in one buffer keeps every entry point within 8 storage buffers, the WebGPU
// default limit that browsers grant everywhere.

#include "common.wgsl" // LogSumExp, workgroupSum2

const LOG_2PI: f32 = 1.8378770664093453;
const HALF_LOG_2PI_E: f32 = 1.4189385332046727; // 1/2 log(2 pi e): the entropy of N(0,1)
const WG_ITEMS: u32 = 64u;
const WG_ELEMENTS: u32 = 256u;
const WG: u32 = 256u; // miReduce's workgroup size (common.wgsl's reductions)

struct Params {
  B: u32,
  T: u32,
  d: u32,
  half: u32,          // H = B / 2: components per query
  allComponents: u32, // 1: every component counts (no mask on the component side)
  termOffset: u32,
  flagOffset: u32,
  statsOffset: u32,
  checkSlot: u32,     // the sigma check's counters in `checks` (see GpuContext.dataCheck)
  logDetOffset: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> xt: array<f32>;
@group(0) @binding(3) var<storage, read> mu: array<f32>;
@group(0) @binding(4) var<storage, read> sigma: array<f32>;
@group(0) @binding(5) var<storage, read> queryMask: array<f32>;     // N
@group(0) @binding(6) var<storage, read> componentMask: array<f32>; // N (combined) or A
@group(0) @binding(7) var<storage, read_write> centres: array<f32>;  // x + mu, for the backward
@group(0) @binding(8) var<storage, read_write> saved: array<f32>;
@group(0) @binding(9) var<storage, read_write> loss: array<f32>;
@group(0) @binding(10) var<storage, read> centresIn: array<f32>;
@group(0) @binding(11) var<storage, read> savedIn: array<f32>;
@group(0) @binding(12) var<storage, read> grad: array<f32>;         // gradient of the scalar loss
@group(0) @binding(13) var<storage, read_write> gradXt: array<f32>;
@group(0) @binding(14) var<storage, read_write> gradMu: array<f32>; // = gradient of x + mu
@group(0) @binding(15) var<storage, read_write> gradSigma: array<f32>;
@group(0) @binding(16) var<storage, read_write> checks: array<atomic<u32>>;

// First row of the half that (i, .) is NOT in: its mixture components / its queries.
fn otherHalfStart(i: u32) -> u32 {
  return select(0u, params.half, i < params.half);
}

fn componentIncluded(k: u32, t: u32) -> bool {
  return params.allComponents == 1u || maskSelects(componentMask[k * params.T + t]);
}

@compute @workgroup_size(WG_ITEMS)
fn miRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var item = gid.x; item < params.B * params.T; item += groups.x * WG_ITEMS) {
    let row = item * d;
    var logDet = 0.0;
    for (var j = 0u; j < d; j++) {
      centres[row + j] = x[row + j] + mu[row + j];
      logDet += log(sigma[row + j]);
    }
    saved[params.logDetOffset + item] = logDet;
  }
}

@compute @workgroup_size(WG_ITEMS)
fn miForward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  let H = params.half;
  let n = params.B * params.T;
  for (var item = gid.x; item < n; item += groups.x * WG_ITEMS) {
    let i = item / params.T;
    let t = item % params.T;
    let rowI = item * d;

    let queryIn = maskSelects(queryMask[item]);
    let kStart = otherHalfStart(i);
    // Online (single pass) max-shifted log-sum-exp over the included components.
    var logQK = logSumExpEmpty();
    var K = 0u;
    for (var kk = 0u; kk < H; kk++) {
      let k = kStart + kk;
      var logN = 0.0;
      if (queryIn && componentIncluded(k, t)) {
        let rowK = (k * params.T + t) * d;
        var quad = 0.0;
        for (var j = 0u; j < d; j++) {
          // Difference first, then divide: with sigma near its floor (1e-4) z is large but exact
          // to f32 rounding, and squaring it keeps the relative precision.
          let z = (xt[rowI + j] - centres[rowK + j]) / sigma[rowK + j];
          quad += z * z;
        }
        logN = -0.5 * quad - saved[params.logDetOffset + k * params.T + t] - 0.5 * f32(d) * LOG_2PI;
        logQK = logSumExpAdd(logQK, logN);
        K++;
      }
      saved[item * H + kk] = logN; // overwritten by the responsibility below
    }

    let included = queryIn && K > 0u;
    var term = 0.0;
    if (included) {
      let lse = logSumExpValue(logQK);
      for (var kk = 0u; kk < H; kk++) {
        var w = 0.0;
        if (componentIncluded(kStart + kk, t)) { w = exp(saved[item * H + kk] - lse); }
        saved[item * H + kk] = w;
      }
      let hcond = saved[params.logDetOffset + item] + f32(d) * HALF_LOG_2PI_E;
      let logQ = lse - log(f32(K));
      term = (-logQ - hcond) / f32(d);
    } else {
      for (var kk = 0u; kk < H; kk++) { saved[item * H + kk] = 0.0; }
    }
    saved[params.termOffset + item] = term;
    saved[params.flagOffset + item] = select(0.0, 1.0, included);
    saved[params.statsOffset + 2u + item] = f32(badSigmas(item, i, t, included));
  }
}

// Values of sigma[item, :] that are not > 0 (log sigma and (y - c) / sigma are undefined there),
// counted where the row is read: as a query that counts, or as a component of a query that does.
fn badSigmas(item: u32, i: u32, t: u32, included: bool) -> u32 {
  var isRead = included;
  if (!isRead && componentIncluded(i, t)) {
    let queries = otherHalfStart(i);
    for (var kk = 0u; kk < params.half; kk++) {
      if (maskSelects(queryMask[(queries + kk) * params.T + t])) { isRead = true; }
    }
  }
  var bad = 0u;
  if (isRead) {
    for (var j = 0u; j < params.d; j++) {
      if (!(sigma[item * params.d + j] > 0.0)) { bad++; }
    }
  }
  return bad;
}

// One workgroup, fixed summation order: the same inputs always give the same bits.
@compute @workgroup_size(WG)
fn miReduce(@builtin(local_invocation_index) lid: u32) {
  let n = params.B * params.T;
  var total = 0.0;
  var count = 0.0;
  var bad = 0u;
  for (var item = lid; item < n; item += WG) {
    total += saved[params.termOffset + item];
    count += saved[params.flagOffset + item];
    bad += u32(saved[params.statsOffset + 2u + item]);
  }
  if (bad > 0u) { atomicAdd(&checks[2u * params.checkSlot], bad); }
  let sums = workgroupSum2(lid, vec2<f32>(total, count));
  if (lid == 0u) {
    let c = sums.y;
    saved[params.statsOffset] = sums.x;
    saved[params.statsOffset + 1u] = c;
    // An empty set gives 0 (and, in the backward, zero gradients), never 0/0.
    loss[0] = select(0.0, sums.x / max(c, 1.0), c > 0.0);
  }
}

// With g the incoming gradient, C the count and w the responsibilities, for an included query i:
//   d term / d xt[i]  =  (1/d) sum_k w_k (xt_i - c_k) / s_k^2
//   d term / d c_k    = -(1/d) w_k (xt_i - c_k) / s_k^2            (c_k = x[k] + mu[k])
//   d term / d s_k    =  (1/d) w_k (1/s_k - (xt_i - c_k)^2 / s_k^3)
//   d term / d s_i    = -(1/d) / s_i                                (through Hcond)
// each scaled by g / C. Excluded pairs have w = 0 and are skipped, not multiplied.
// One thread per piece of SEG columns of a row r = (r, t): the row's indices, flag and factor
// once per piece, not once per element (no integer division per element).
const SEG: u32 = 64u;

@compute @workgroup_size(WG_ELEMENTS)
fn miBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  let H = params.half;
  let count = savedIn[params.statsOffset + 1u];
  let factor = select(0.0, grad[0] / (max(count, 1.0) * f32(d)), count > 0.0);
  let segments = (d + SEG - 1u) / SEG;
  for (var piece = gid.x; piece < params.B * params.T * segments; piece += groups.x * WG_ELEMENTS) {
    let item = piece / segments;
    let j0 = (piece % segments) * SEG;
    let r = item / params.T;
    let t = item % params.T;
    let other = otherHalfStart(r);
    let ownLocal = r - (params.half - other); // index of r within its own half
    let isQuery = savedIn[params.flagOffset + item] > 0.5;
    for (var j = j0; j < min(d, j0 + SEG); j++) {
      let e = item * d + j;
      let y = xt[e];
      let cr = centresIn[e];
      let sr = sigma[e];

      var gQuery = 0.0;
      var gSigma = 0.0;
      if (isQuery) {
        for (var kk = 0u; kk < H; kk++) {
          let w = savedIn[item * H + kk];
          if (w > 0.0) {
            let at = ((other + kk) * params.T + t) * d + j;
            let sk = sigma[at];
            let z = (y - centresIn[at]) / sk;
            gQuery += w * (z / sk);
          }
        }
        gSigma -= 1.0 / sr;
      }

      var gCentre = 0.0;
      for (var ii = 0u; ii < H; ii++) {
        let query = (other + ii) * params.T + t;
        let w = savedIn[query * H + ownLocal];
        if (w > 0.0) {
          let z = (xt[query * d + j] - cr) / sr;
          gCentre -= w * (z / sr);
          gSigma += w * ((1.0 - z * z) / sr);
        }
      }
      gradXt[e] = factor * gQuery;
      gradMu[e] = factor * gCentre;
      gradSigma[e] = factor * gSigma;
    }
  }
}
