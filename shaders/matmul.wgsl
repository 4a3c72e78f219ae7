// Batched matrix product C[b] = op(A[b]) op(B[b]), op = optional transpose, tiled in workgroup
// memory: each 16x16 workgroup computes a 64x64 block of C, each thread a 4x4 register block,
// stepping through K in slices of 16. Batch is the z dimension (grid-stride, so any count works);
// a batch stride of 0 reuses one matrix for every batch entry (a weight shared by the batch).

override TRANS_A: bool = false; // A stored [K, M]
override TRANS_B: bool = false; // B stored [N, K]

const TILE: u32 = 64u;
const KT: u32 = 16u;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  batch: u32,
  aBatchStride: u32,
  bBatchStride: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// Both tiles are stored k-major: tileA[k * TILE + m], tileB[k * TILE + n].
var<workgroup> tileA: array<f32, 1024>;
var<workgroup> tileB: array<f32, 1024>;

fn loadA(base: u32, m: u32, k: u32) -> f32 {
  if (m >= params.M || k >= params.K) { return 0.0; }
  if (TRANS_A) { return a[base + k * params.M + m]; }
  return a[base + m * params.K + k];
}

fn loadB(base: u32, k: u32, n: u32) -> f32 {
  if (k >= params.K || n >= params.N) { return 0.0; }
  if (TRANS_B) { return b[base + n * params.K + k]; }
  return b[base + k * params.N + n];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) flat: u32) {
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  for (var batch = wid.z; batch < params.batch; batch += groups.z) {
    let aBase = batch * params.aBatchStride;
    let bBase = batch * params.bBatchStride;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
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
    let cBase = batch * params.M * params.N;
    for (var i = 0u; i < 4u; i++) {
      let row = row0 + lid.y + 16u * i;
      for (var j = 0u; j < 4u; j++) {
        let col = col0 + lid.x + 16u * j;
        if (row < params.M && col < params.N) { c[cBase + row * params.N + col] = acc[i * 4u + j]; }
      }
    }
  }
}
