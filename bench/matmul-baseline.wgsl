// Batched matrix product C[b] = op(A[b]) op(B[b]), op = optional transpose, tiled in workgroup
// memory: each 16x16 workgroup computes a 64x64 block of C, each thread a 4x4 register block,
// stepping through K in slices of 16. Batch is the z dimension (grid-stride, so any count works);
// a batch stride of 0 reuses one matrix for every batch entry (a weight shared by the batch).
// B (the weight) and the bias may be packed 16-bit weights, unpacked as they load; accumulation
// is f32. A and C may be windows of larger matrices (row strides lda / ldc, element offsets): the
// LM head stored as row blocks writes its block's columns of the logits, and its backward reads
// them and accumulates into C (ACCUMULATE starts from C's values, so that a K split at multiples
// of 16 sums in exactly the order of one product).

override TRANS_A: bool = false; // A stored [K, M]
override TRANS_B: bool = false; // B stored [N, K]
override B_DTYPE: u32 = 0u;     // 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)
override HAS_BIAS: bool = false;
override BIAS_DTYPE: u32 = 0u;

const TILE: u32 = 64u;
const KT: u32 = 16u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  batch: u32,
  aBatchStride: u32,
  bBatchStride: u32,
  lda: u32,        // row stride of A as stored (K, or M when transposed, for a whole matrix)
  ldc: u32,        // row stride of C (N for a whole matrix)
  aOffset: u32,    // first element of A
  cOffset: u32,    // first element of C
  accumulate: u32, // 1: C += op(A) op(B)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;    // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<u32>; // [N], bound only with HAS_BIAS

// Element e of a weight stored as `dtype` (0 f32 bits, 1 bf16, 2 f16) in 32-bit words.
fn unpackWeight(word: u32, e: u32, dtype: u32) -> f32 {
  if (dtype == 0u) { return bitcast<f32>(word); }
  let high = (e & 1u) == 1u;
  if (dtype == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

fn readB(e: u32) -> f32 {
  if (B_DTYPE == 0u) { return bitcast<f32>(b[e]); }
  return unpackWeight(b[e >> 1u], e, B_DTYPE);
}

fn readBias(e: u32) -> f32 {
  if (BIAS_DTYPE == 0u) { return bitcast<f32>(bias[e]); }
  return unpackWeight(bias[e >> 1u], e, BIAS_DTYPE);
}

// Both tiles are stored k-major: tileA[k * TILE + m], tileB[k * TILE + n].
var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

fn loadA(base: u32, m: u32, k: u32) -> f32 {
  if (m >= params.M || k >= params.K) { return 0.0; }
  if (TRANS_A) { return a[base + k * params.lda + m]; }
  return a[base + m * params.lda + k];
}

fn loadB(base: u32, k: u32, n: u32) -> f32 {
  if (k >= params.K || n >= params.N) { return 0.0; }
  if (TRANS_B) { return readB(base + n * params.K + k); }
  return readB(base + k * params.N + n);
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) flat: u32) {
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  for (var batch = wid.z; batch < params.batch; batch += groups.z) {
    let aBase = params.aOffset + batch * params.aBatchStride;
    let bBase = batch * params.bBatchStride;
    let cBase = params.cOffset + batch * params.M * params.ldc;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    if (params.accumulate == 1u) {
      for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j++) {
          let col = col0 + lid.x + 16u * j;
          if (row < params.M && col < params.N) { acc[i * 4u + j] = c[cBase + row * params.ldc + col]; }
        }
      }
    }
    for (var k0 = 0u; k0 < params.K; k0 += KT) {
      // 1024 elements per tile, 4 per thread; consecutive threads read consecutive addresses.
      for (var e = 0u; e < 4u; e++) {
        let idx = flat + e * 256u;
        if (TRANS_A) {
          let k = idx / TILE; let m = idx % TILE;
          tileA[k * TILE + m] = loadA(aBase, row0 + m, k0 + k);
        } else {
          let m = idx / KT; let k = idx % KT;
          tileA[k * TILE + m] = loadA(aBase, row0 + m, k0 + k);
        }
        if (TRANS_B) {
          let n = idx / KT; let k = idx % KT;
          tileB[k * TILE + n] = loadB(bBase, k0 + k, col0 + n);
        } else {
          let k = idx / TILE; let n = idx % TILE;
          tileB[k * TILE + n] = loadB(bBase, k0 + k, col0 + n);
        }
      }
      workgroupBarrier();
      for (var k = 0u; k < KT; k++) {
        var av: array<f32, 4>;
        var bv: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
          av[i] = tileA[k * TILE + lid.y + 16u * i];
          bv[i] = tileB[k * TILE + lid.x + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
          for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] += av[i] * bv[j]; }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
      let row = row0 + lid.y + 16u * i;
      for (var j = 0u; j < 4u; j++) {
        let col = col0 + lid.x + 16u * j;
        if (row < params.M && col < params.N) {
          var v = acc[i * 4u + j];
          if (HAS_BIAS) { v += readBias(col); }
          c[cBase + row * params.ldc + col] = v;
        }
      }
    }
  }
}
