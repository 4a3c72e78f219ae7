// Fused scaled dot-product attention (FlashAttention-2 style), forward and backward, with
// grouped-query heads, optional causal masking and an optional key padding mask.
//
// Layouts: q, out, gradOut, dq [B, T, H, Dh]; k, v, dk, dv [B, T, Hkv, Dh]; keyMask [B, T];
// query head h reads kv head h / (H / Hkv). The [T, T] score matrix never reaches global memory:
// a workgroup owns WG consecutive rows of one (batch, head), one row per thread, and streams the
// other side through workgroup memory in tiles of tileRows rows (tileRows * Dh <= TILE), keeping
// its row's running max, sum and output in registers (online softmax).
//
// Every sum has one owner, so the results are deterministic: the forward and dQ kernels own query
// rows, the dK/dV kernel owns key rows and loops over the query heads of its group.
//
// A hidden key (later than the query when causal, or padding) takes no part at all. A query row
// that sees no key gets output 0 and logsumexp +inf, so any exp(s - lse) made from it is 0.

#include "common.wgsl" // negInf, posInf

// The head dimension as a pipeline constant when it is short (0: read params.headDim at run
// time): the loops over a head's elements then have trip counts the compiler knows, so it can
// unroll them and keep the per-row arrays below in registers (heads of 32: 2-4x on lavapipe).
override HEAD_DIM: u32 = 0u;

fn headDim() -> u32 {
  return select(params.headDim, HEAD_DIM, HEAD_DIM != 0u);
}

const WG: u32 = 64u;
const MAX_DH: u32 = 128u;
const TILE: u32 = 2048u;           // two tiles of 8 KiB: 16 KiB, WebGPU's guaranteed minimum
const MAX_TILE_ROWS: u32 = 64u;

struct Params {
  batch: u32,
  seq: u32,
  heads: u32,
  kvHeads: u32,
  headDim: u32,
  tileRows: u32,
  causal: u32,
  hasMask: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> keyMask: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;            // [B, T, H]
@group(0) @binding(7) var<storage, read> o: array<f32>;                    // the forward's output
@group(0) @binding(8) var<storage, read> gradOut: array<f32>;
@group(0) @binding(9) var<storage, read> savedLse: array<f32>;
@group(0) @binding(10) var<storage, read_write> rowStats: array<f32>;      // [B, T, H, 2]: lse, D
@group(0) @binding(11) var<storage, read> savedRowStats: array<f32>;
@group(0) @binding(12) var<storage, read_write> dq: array<f32>;
@group(0) @binding(13) var<storage, read_write> dk: array<f32>;
@group(0) @binding(14) var<storage, read_write> dv: array<f32>;

var<workgroup> tileA: array<f32, TILE>;
var<workgroup> tileB: array<f32, TILE>;

fn keyVisible(b: u32, j: u32, i: u32) -> bool {
  if (params.causal != 0u && j > i) { return false; }
  if (params.hasMask != 0u && !maskSelects(keyMask[b * params.seq + j])) { return false; }
  return true;
}

fn qIndex(b: u32, t: u32, h: u32) -> u32 {
  return ((b * params.seq + t) * params.heads + h) * headDim();
}
fn kvIndex(b: u32, t: u32, g: u32) -> u32 {
  return ((b * params.seq + t) * params.kvHeads + g) * headDim();
}

// Causal: keys after the block's last query row are hidden from all of its rows.
fn keyEndFor(rowBlock: u32) -> u32 {
  if (params.causal != 0u) { return min(params.seq, (rowBlock + 1u) * WG); }
  return params.seq;
}

@compute @workgroup_size(WG)
fn attentionForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let T = params.seq;
  let H = params.heads;
  let dh = headDim();
  let blocks = (T + WG - 1u) / WG;
  for (var item = wid.x; item < params.batch * H * blocks; item += groups.x) {
    let rowBlock = item % blocks;
    let h = (item / blocks) % H;
    let b = item / (blocks * H);
    let g = h / (H / params.kvHeads);
    let i = rowBlock * WG + lid;
    let rowOk = i < T;
    var qi: array<f32, MAX_DH>;
    var acc: array<f32, MAX_DH>;
    let qa = qIndex(b, min(i, T - 1u), h);
    for (var c = 0u; c < dh; c++) { qi[c] = q[qa + c] * params.scale; }
    var m = negInf();
    var l = 0.0;
    let keyEnd = keyEndFor(rowBlock);
    for (var j0 = 0u; j0 < keyEnd; j0 += params.tileRows) {
      let n = min(params.tileRows, keyEnd - j0);
      workgroupBarrier(); // the previous tile is no longer read
      for (var e = lid; e < n * dh; e += WG) {
        let at = kvIndex(b, j0 + e / dh, g) + e % dh;
        tileA[e] = k[at];
        tileB[e] = v[at];
      }
      workgroupBarrier();
      if (rowOk) {
        var s: array<f32, MAX_TILE_ROWS>;
        var tileMax = negInf();
        for (var r = 0u; r < n; r++) {
          s[r] = negInf();
          if (keyVisible(b, j0 + r, i)) {
            var dot = 0.0;
            for (var c = 0u; c < dh; c++) { dot += qi[c] * tileA[r * dh + c]; }
            s[r] = dot;
            tileMax = max(tileMax, dot);
          }
        }
        if (tileMax > negInf()) {
          let mNew = max(m, tileMax);
          let correction = exp(m - mNew); // 0 while m is still -inf
          l *= correction;
          for (var c = 0u; c < dh; c++) { acc[c] *= correction; }
          for (var r = 0u; r < n; r++) {
            let p = exp(s[r] - mNew); // hidden keys: exp(-inf) = 0
            if (p > 0.0) {
              l += p;
              for (var c = 0u; c < dh; c++) { acc[c] += p * tileB[r * dh + c]; }
            }
          }
          m = mNew;
        }
      }
    }
    if (rowOk) {
      let oa = qIndex(b, i, h);
      let inv = select(0.0, 1.0 / l, l > 0.0);
      for (var c = 0u; c < dh; c++) { out[oa + c] = acc[c] * inv; }
      lse[(b * T + i) * H + h] = select(posInf(), m + log(l), l > 0.0);
    }
  }
}

// D_i = rowsum(dO_i * O_i), the softmax-backward term shared by all keys of row i, stored next to
// the row's logsumexp so the two backward kernels read one small buffer.
@compute @workgroup_size(WG)
fn attentionBackwardPrep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let dh = headDim();
  for (var row = gid.x; row < params.batch * params.seq * params.heads; row += groups.x * WG) {
    var d = 0.0;
    for (var c = 0u; c < dh; c++) { d += o[row * dh + c] * gradOut[row * dh + c]; }
    rowStats[2u * row] = savedLse[row];
    rowStats[2u * row + 1u] = d;
  }
}

// dQ_i = scale * sum_j P_ij (dP_ij - D_i) k_j, with P_ij = exp(s_ij - lse_i), dP_ij = dO_i . v_j.
@compute @workgroup_size(WG)
fn attentionBackwardQuery(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
  let T = params.seq;
  let H = params.heads;
  let dh = headDim();
  let blocks = (T + WG - 1u) / WG;
  for (var item = wid.x; item < params.batch * H * blocks; item += groups.x) {
    let rowBlock = item % blocks;
    let h = (item / blocks) % H;
    let b = item / (blocks * H);
    let g = h / (H / params.kvHeads);
    let i = rowBlock * WG + lid;
    let rowOk = i < T;
    var qi: array<f32, MAX_DH>;
    var gi: array<f32, MAX_DH>;
    var dqi: array<f32, MAX_DH>;
    let iClamped = min(i, T - 1u);
    let qa = qIndex(b, iClamped, h);
    for (var c = 0u; c < dh; c++) {
      qi[c] = q[qa + c] * params.scale;
      gi[c] = gradOut[qa + c];
    }
    let row = (b * T + iClamped) * H + h;
    let lseI = savedRowStats[2u * row];
    let dI = savedRowStats[2u * row + 1u];
    let keyEnd = keyEndFor(rowBlock);
    for (var j0 = 0u; j0 < keyEnd; j0 += params.tileRows) {
      let n = min(params.tileRows, keyEnd - j0);
      workgroupBarrier();
      for (var e = lid; e < n * dh; e += WG) {
        let at = kvIndex(b, j0 + e / dh, g) + e % dh;
        tileA[e] = k[at];
        tileB[e] = v[at];
      }
      workgroupBarrier();
      if (rowOk) {
        for (var r = 0u; r < n; r++) {
          if (!keyVisible(b, j0 + r, i)) { continue; }
          var s = 0.0;
          var dp = 0.0;
          for (var c = 0u; c < dh; c++) {
            s += qi[c] * tileA[r * dh + c];
            dp += gi[c] * tileB[r * dh + c];
          }
          let ds = exp(s - lseI) * (dp - dI);
          for (var c = 0u; c < dh; c++) { dqi[c] += ds * tileA[r * dh + c]; }
        }
      }
    }
    if (rowOk) {
      for (var c = 0u; c < dh; c++) { dq[qa + c] = dqi[c] * params.scale; }
    }
  }
}

// For key row j of kv head g, over the query heads h of its group and the query rows i that see it:
// dV_j = sum P_ij dO_i and dK_j = scale * sum P_ij (dP_ij - D_i) q_i.
@compute @workgroup_size(WG)
fn attentionBackwardKeyValue(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
  let T = params.seq;
  let H = params.heads;
  let G = params.kvHeads;
  let dh = headDim();
  let group = H / G;
  let blocks = (T + WG - 1u) / WG;
  for (var item = wid.x; item < params.batch * G * blocks; item += groups.x) {
    let rowBlock = item % blocks;
    let g = (item / blocks) % G;
    let b = item / (blocks * G);
    let j = rowBlock * WG + lid;
    let jClamped = min(j, T - 1u);
    // The key's own visibility does not depend on the query; causality is checked per query.
    let keyOn = j < T && (params.hasMask == 0u || maskSelects(keyMask[b * T + jClamped]));
    var kj: array<f32, MAX_DH>;
    var vj: array<f32, MAX_DH>;
    var dkj: array<f32, MAX_DH>;
    var dvj: array<f32, MAX_DH>;
    let ka = kvIndex(b, jClamped, g);
    for (var c = 0u; c < dh; c++) {
      kj[c] = k[ka + c] * params.scale;
      vj[c] = v[ka + c];
    }
    // Causal: queries before the rowBlock's first key see none of its keys.
    var queryStart = 0u;
    if (params.causal != 0u) { queryStart = rowBlock * WG; }
    for (var hh = 0u; hh < group; hh++) {
      let h = g * group + hh;
      for (var i0 = queryStart; i0 < T; i0 += params.tileRows) {
        let n = min(params.tileRows, T - i0);
        workgroupBarrier();
        for (var e = lid; e < n * dh; e += WG) {
          let at = qIndex(b, i0 + e / dh, h) + e % dh;
          tileA[e] = q[at];
          tileB[e] = gradOut[at];
        }
        workgroupBarrier();
        if (keyOn) {
          for (var r = 0u; r < n; r++) {
            let i = i0 + r;
            if (params.causal != 0u && i < j) { continue; }
            let row = (b * T + i) * H + h;
            var s = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < dh; c++) {
              s += tileA[r * dh + c] * kj[c];
              dp += tileB[r * dh + c] * vj[c];
            }
            let p = exp(s - savedRowStats[2u * row]);
            let ds = p * (dp - savedRowStats[2u * row + 1u]);
            for (var c = 0u; c < dh; c++) {
              dvj[c] += p * tileB[r * dh + c];
              dkj[c] += ds * tileA[r * dh + c];
            }
          }
        }
      }
    }
    if (j < T) {
      for (var c = 0u; c < dh; c++) {
        dk[ka + c] = dkj[c] * params.scale;
        dv[ka + c] = dvj[c];
      }
    }
  }
}
