// Rotary position embedding in Hugging Face's rotate_half convention: dimension i of a head pairs
// with i + Dh/2 (not with its neighbour). One thread per (position, pair index i), grid-stride:
// it computes the angle's sine and cosine once and rotates pair i of every head at that position
// (the accurate sinCos costs far more than the rotation). The backward is the same kernel with
// the rotation reversed (params.direction = -1): a rotation's transpose is its inverse.

// sinCos (common.wgsl), not the built-ins: those are only guaranteed to 2^-11 absolute in WGSL,
// and SwiftShader's (Chromium without a GPU) are off by ~2e-4, which moves Llama's outputs past 1e-4.
#include "common.wgsl" // sinCos

const WG: u32 = 256u;

struct Params {
  pairs: u32,      // B * T * H * Dh / 2 (the thread count is B * T * Dh / 2)
  seq: u32,        // T
  heads: u32,      // H
  half: u32,       // Dh / 2
  offset: u32,     // position of t = 0
  direction: f32,  // +1 forward, -1 backward
  _pad0: u32,
  _pad1: u32,
  // Inverse frequency of pair i at invFreq[i / 4][i % 4] (Dh / 2 <= 128): theta^(-2i/Dh) with any
  // linear / llama3 scaling applied, computed on the host in float64 (src/ops/rope.ts).
  invFreq: array<vec4<f32>, 32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Reduces an angle to [-pi, pi] before sin/cos: WGSL guarantees their accuracy only there, and
// positions of a few thousand give angles of a few thousand radians. 2*pi is split Cody-Waite
// style into a short head (k * head is exact for k < 2^16, and so is angle - k * head) and a
// tail, so the reduction adds about 1e-10 * k of error where an f32 `angle % (2 pi)` would add
// about 1e-4 at angle 4096.
fn reduceAngle(angle: f32) -> f32 {
  let k = round(angle * 0.15915494309189535);
  let head = 6.28125;                 // 201 / 32: 8 significant bits
  let tail = 0.0019353071795864769;   // 2 pi - head
  return (angle - k * head) - k * tail;
}

@compute @workgroup_size(WG)
fn ropeApply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let half = params.half;
  let dh = 2u * half;
  let H = params.heads;
  for (var p = gid.x; p < params.pairs / H; p += groups.x * WG) {
    let i = p % half;
    let bt = p / half;                        // index of the (b, t) position
    let pos = f32(bt % params.seq + params.offset);
    let invFreq = params.invFreq[i / 4u][i % 4u];
    let r = reduceAngle(pos * invFreq);
    let sc = sinCos(r);
    let c = sc.y;
    let s = params.direction * sc.x;
    for (var h = 0u; h < H; h++) {
      let base = (bt * H + h) * dh;
      let a = x[base + i];
      let z = x[base + i + half];
      out[base + i] = a * c - z * s;
      out[base + i + half] = z * c + a * s;
    }
  }
}
