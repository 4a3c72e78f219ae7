// Counter-based normal generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11) and Box-Muller. Element i is a pure function of (seed, offset, i), so a
// run with the same seed is bit-for-bit repeatable on a device and any element can be computed
// by any thread: no generator state lives on the GPU.

#include "common.wgsl" // logAccurate, sinCos

const WG: u32 = 256u;
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const TWO_PI: f32 = 6.283185307179586;

struct Params {
  n: u32,
  seedLo: u32,
  seedHi: u32,
  offset: u32, // first counter block, so that successive draws of one seed do not overlap
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// (high, low) 32-bit halves of the 64-bit product a * b, from 16-bit limbs (WGSL has no u64).
fn mulHiLo(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xFFFFu;
  let ah = a >> 16u;
  let bl = b & 0xFFFFu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
  let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
  return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    let p0 = mulHiLo(PHILOX_M0, c.x);
    let p1 = mulHiLo(PHILOX_M1, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
  }
  return c;
}

// A uniform in (0, 1): 23 random bits, centred in their bucket, so log() never sees 0 or 1.
// 23, not 24: k + 0.5 then needs at most 24 significant bits, so u is exact in f32 (24 bits
// rounded u, by up to 3% of 1 - u, near u = 1) and the float64 twin computes the same u.
fn unitOpen(bits: u32) -> f32 {
  return (f32(bits >> 9u) + 0.5) * (1.0 / 8388608.0);
}

// (cos, sin) of 2 pi u for u in (0, 1). u - round(u) is exact and in [-1/2, 1/2], so the angle
// handed to sinCos lies in [-pi, pi] (the built-in cos and sin are loose, SwiftShader's by 2e-4).
fn cosSinTurn(u: f32) -> vec2<f32> {
  let sc = sinCos(TWO_PI * (u - round(u)));
  return vec2<f32>(sc.y, sc.x);
}

// out[i] ~ N(0, 1). Each Philox block gives 4 words -> 2 Box-Muller pairs -> elements 4b .. 4b+3.
@compute @workgroup_size(WG)
fn normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let blocks = (params.n + 3u) / 4u;
  for (var b = gid.x; b < blocks; b += groups.x * WG) {
    let r = philox(vec4<u32>(b + params.offset, 0u, 0u, 0u), vec2<u32>(params.seedLo, params.seedHi));
    // logAccurate: near u = 1 the built-in log's 1e-7 absolute error is all of -2 log u.
    let radius0 = sqrt(-2.0 * logAccurate(unitOpen(r.x)));
    let radius1 = sqrt(-2.0 * logAccurate(unitOpen(r.z)));
    let z = vec4<f32>(radius0 * cosSinTurn(unitOpen(r.y)), radius1 * cosSinTurn(unitOpen(r.w)));
    for (var j = 0u; j < 4u; j++) {
      let i = 4u * b + j;
      if (i < params.n) { out[i] = z[j]; }
    }
  }
}
