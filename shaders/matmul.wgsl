// Batched matrix product C[b] = op(A[b]) op(B[b]), op = optional transpose, register-tiled with
// no workgroup memory and no barrier. A workgroup is one row of WG threads; it owns ROWS rows of C
// and 4 * WG columns, each thread a ROWS x 4 block held in registers (acc0..acc7, one vec4 per
// row). K is walked 4 at a time: the thread loads a 4 x 4 block of B (its 4 columns, 4 steps of
// k) and, per row, 4 elements of A, then adds the block's matrix-vector product to the row.
//
// Why this shape: a software adapter (lavapipe, SwiftShader) runs a workgroup's invocations as
// the lanes of a CPU vector loop and pays for every barrier and every workgroup-memory access;
// here the row indices depend only on the workgroup id, so every load of A is the same address
// in all lanes (a scalar load the driver broadcasts), the loads of B are the lanes' own columns,
// and the CPU caches do what workgroup tiles do on a GPU. On a GPU a workgroup is then one
// subgroup reading A once and B coalesced. WG (the wrapper sets it from the adapter's subgroup
// size and workgroup limits) and ROWS (8; 1 for a one-row product, where a row block would
// be all padding) are override constants; the unused accumulators fold away. So are VEC_A / VEC_B
// (vec4 loads): as uniform flags they cost SwiftShader, which runs both sides of a branch, 5x.
//
// Ragged edges: rows and columns past M and N read a clamped, in-bounds index and are never
// written; the last steps of K past a multiple of 4 read zeros. Batch is the z dimension and row
// blocks the y dimension (a grid over the limit is split into dispatches); a batch stride of 0 reuses
// one matrix for every batch entry (a weight shared by the batch). B (the weight) and the bias may
// be packed 16-bit weights, unpacked as they load; accumulation is f32. A and C may be windows of
// larger matrices (row strides lda / ldc, element offsets): the LM head stored as row blocks
// writes its block's columns of the logits, and its backward reads them and accumulates into C
// (ACCUMULATE starts from C's values; K is summed 4 steps at a time, so a K split at multiples
// of 4 sums in exactly the order of one product).

override TRANS_A: bool = false; // A stored [K, M]
override TRANS_B: bool = false; // B stored [N, K]
override B_DTYPE: u32 = 0u;     // 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)
override HAS_BIAS: bool = false;
override BIAS_DTYPE: u32 = 0u;
override VEC_A: bool = false;   // A read 4 elements at a time through a4 (the wrapper checks alignment)
override VEC_B: bool = false;   // B read 4 elements at a time (f32 through b4, packed as two words)
override WG: u32 = 8u;          // threads per workgroup (one row of them)
override ROWS: u32 = 8u;        // rows of C per workgroup: 1, 2, 4 or 8 (the wrapper uses 1 and 8)

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
  rowBlock0: u32,  // first row block (of ROWS rows) of this dispatch: the wrapper splits grids
  batch0: u32,     // first batch entry of this dispatch  over the per-dimension workgroup limit
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;    // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<u32>; // [N], bound only with HAS_BIAS
// The same buffers as a and b, seen as vec4s: one load per 4 elements where every index of a
// 4-step is a multiple of 4 (read only with VEC_A / VEC_B).
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<u32>>;

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

// A[row, k .. k+3] (row already clamped into range); steps at or past `kEnd` read 0.
fn loadA4(base: u32, row: u32, k: u32, kEnd: u32) -> vec4<f32> {
  var v: vec4<f32>;
  for (var q = 0u; q < 4u; q++) {
    let kq = min(k + q, kEnd - 1u);
    let e = select(base + row * params.lda + kq, base + kq * params.lda + row, TRANS_A);
    v[q] = select(0.0, a[e], k + q < kEnd);
  }
  return v;
}

// The same for a step wholly inside K: no bounds to check.
fn loadA4Full(base: u32, row: u32, k: u32) -> vec4<f32> {
  if (TRANS_A) {
    let e = base + k * params.lda + row;
    return vec4<f32>(a[e], a[e + params.lda], a[e + 2u * params.lda], a[e + 3u * params.lda]);
  }
  let e = base + row * params.lda + k;
  if (VEC_A) { return a4[e >> 2u]; }
  return vec4<f32>(a[e], a[e + 1u], a[e + 2u], a[e + 3u]);
}

// Element (k, n) of B.
fn bAt(base: u32, k: u32, n: u32) -> f32 {
  if (TRANS_B) { return readB(base + n * params.K + k); }
  return readB(base + k * params.N + n);
}

// B[k .. k+3, cols] as a matrix whose column q is row k+q of B at the 4 (clamped) columns `cols`;
// steps at or past `kEnd` read 0.
fn loadB4(base: u32, cols: vec4<u32>, k: u32, kEnd: u32) -> mat4x4<f32> {
  var m: mat4x4<f32>;
  for (var q = 0u; q < 4u; q++) {
    let kq = min(k + q, kEnd - 1u);
    let inside = k + q < kEnd;
    m[q] = select(vec4<f32>(0.0), vec4<f32>(bAt(base, kq, cols.x), bAt(base, kq, cols.y), bAt(base, kq, cols.z), bAt(base, kq, cols.w)), inside);
  }
  return m;
}

// Elements e .. e+3 of a packed weight, e a multiple of 4: two whole words.
fn unpack4(e: u32) -> vec4<f32> {
  let w0 = b[e >> 1u];
  let w1 = b[(e >> 1u) + 1u];
  if (B_DTYPE == 1u) {
    return bitcast<vec4<f32>>(vec4<u32>(w0 << 16u, w0 & 0xffff0000u, w1 << 16u, w1 & 0xffff0000u));
  }
  return vec4<f32>(unpack2x16float(w0), unpack2x16float(w1));
}

// loadB4Full for a packed weight whose 4-element runs (4 columns, or 4 steps of k when
// transposed) start on a multiple of 4: each run is two words, unpacked together.
fn loadPacked4x4(base: u32, cols: vec4<u32>, k: u32) -> mat4x4<f32> {
  if (TRANS_B) {
    let K = params.K;
    return transpose(mat4x4<f32>(unpack4(base + cols.x * K + k), unpack4(base + cols.y * K + k),
      unpack4(base + cols.z * K + k), unpack4(base + cols.w * K + k)));
  }
  let e = base + k * params.N + min(cols.x, params.N - 4u);
  let N = params.N;
  return mat4x4<f32>(unpack4(e), unpack4(e + N), unpack4(e + 2u * N), unpack4(e + 3u * N));
}

// The same for a step wholly inside K. With VEC_B, `cols.x` is a multiple of 4 and either all
// four columns are in range or none is (N a multiple of 4), so one vec4 holds them (non-transposed),
// or each column's 4 steps of k are one vec4 (transposed, K a multiple of 4).
fn loadB4Full(base: u32, cols: vec4<u32>, k: u32) -> mat4x4<f32> {
  if (VEC_B && B_DTYPE != 0u) { return loadPacked4x4(base, cols, k); }
  if (VEC_B && TRANS_B) {
    let K = params.K;
    return transpose(mat4x4<f32>(
      bitcast<vec4<f32>>(b4[(base + cols.x * K + k) >> 2u]), bitcast<vec4<f32>>(b4[(base + cols.y * K + k) >> 2u]),
      bitcast<vec4<f32>>(b4[(base + cols.z * K + k) >> 2u]), bitcast<vec4<f32>>(b4[(base + cols.w * K + k) >> 2u])));
  }
  if (VEC_B) {
    let e = (base + k * params.N + min(cols.x, params.N - 4u)) >> 2u;
    let step = params.N >> 2u;
    return mat4x4<f32>(bitcast<vec4<f32>>(b4[e]), bitcast<vec4<f32>>(b4[e + step]),
      bitcast<vec4<f32>>(b4[e + 2u * step]), bitcast<vec4<f32>>(b4[e + 3u * step]));
  }
  var m: mat4x4<f32>;
  for (var q = 0u; q < 4u; q++) {
    m[q] = vec4<f32>(bAt(base, k + q, cols.x), bAt(base, k + q, cols.y), bAt(base, k + q, cols.z), bAt(base, k + q, cols.w));
  }
  return m;
}

// Where a row's sums start: 0, or C's values when accumulating (so that the products add to C in
// the order of one longer product). `row` is clamped into range; columns past N read 0.
fn startRow(cBase: u32, row: u32, col: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (params.accumulate == 1u) {
    for (var j = 0u; j < 4u; j++) {
      let n = min(col + j, params.N - 1u);
      v[j] = select(0.0, c[cBase + row * params.ldc + n], col + j < params.N);
    }
  }
  return v;
}

fn storeRow(cBase: u32, row: u32, col: u32, v: vec4<f32>) {
  if (row >= params.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let n = col + j;
    if (n < params.N) {
      var x = v[j];
      if (HAS_BIAS) { x += readBias(n); }
      c[cBase + row * params.ldc + n] = x;
    }
  }
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = params.M;
  let K = params.K;
  let col = (wid.x * WG + lid.x) * 4u;
  let kMain = K & ~3u;
  // This thread's 4 columns, clamped into range (those past N are computed, never stored).
  let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.N - 1u));
  // One batch entry and one row block per workgroup, no loop around them: a grid-stride loop here
  // cost SwiftShader 1.7x (bench/matmul.ts).
  let batch = params.batch0 + wid.z;
  let aBase = params.aOffset + batch * params.aBatchStride;
  let bBase = batch * params.bBatchStride;
  let cBase = params.cOffset + batch * M * params.ldc;
  let row0 = (params.rowBlock0 + wid.y) * ROWS;
  // Rows past M repeat the last row (in range, never stored); they depend on the workgroup only.
  let r0 = row0;
  let r1 = min(row0 + 1u, M - 1u);
  let r2 = min(row0 + 2u, M - 1u);
  let r3 = min(row0 + 3u, M - 1u);
  let r4 = min(row0 + 4u, M - 1u);
  let r5 = min(row0 + 5u, M - 1u);
  let r6 = min(row0 + 6u, M - 1u);
  let r7 = min(row0 + 7u, M - 1u);
  var acc0 = startRow(cBase, r0, col);
  var acc1 = vec4<f32>(0.0);
  if (ROWS > 1u) { acc1 = startRow(cBase, r1, col); }
  var acc2 = vec4<f32>(0.0);
  if (ROWS > 2u) { acc2 = startRow(cBase, r2, col); }
  var acc3 = vec4<f32>(0.0);
  if (ROWS > 3u) { acc3 = startRow(cBase, r3, col); }
  var acc4 = vec4<f32>(0.0);
  if (ROWS > 4u) { acc4 = startRow(cBase, r4, col); }
  var acc5 = vec4<f32>(0.0);
  if (ROWS > 5u) { acc5 = startRow(cBase, r5, col); }
  var acc6 = vec4<f32>(0.0);
  if (ROWS > 6u) { acc6 = startRow(cBase, r6, col); }
  var acc7 = vec4<f32>(0.0);
  if (ROWS > 7u) { acc7 = startRow(cBase, r7, col); }
  // The main steps need no bounds on k; the one step past the last multiple of 4 zero-fills.
  for (var k = 0u; k < kMain; k += 4u) {
    let bk = loadB4Full(bBase, cols, k);
    acc0 += bk * loadA4Full(aBase, r0, k);
    if (ROWS > 1u) { acc1 += bk * loadA4Full(aBase, r1, k); }
    if (ROWS > 2u) {
      acc2 += bk * loadA4Full(aBase, r2, k);
      acc3 += bk * loadA4Full(aBase, r3, k);
    }
    if (ROWS > 4u) {
      acc4 += bk * loadA4Full(aBase, r4, k);
      acc5 += bk * loadA4Full(aBase, r5, k);
      acc6 += bk * loadA4Full(aBase, r6, k);
      acc7 += bk * loadA4Full(aBase, r7, k);
    }
  }
  if (kMain < K) {
    let bk = loadB4(bBase, cols, kMain, K);
    acc0 += bk * loadA4(aBase, r0, kMain, K);
    if (ROWS > 1u) { acc1 += bk * loadA4(aBase, r1, kMain, K); }
    if (ROWS > 2u) {
      acc2 += bk * loadA4(aBase, r2, kMain, K);
      acc3 += bk * loadA4(aBase, r3, kMain, K);
    }
    if (ROWS > 4u) {
      acc4 += bk * loadA4(aBase, r4, kMain, K);
      acc5 += bk * loadA4(aBase, r5, kMain, K);
      acc6 += bk * loadA4(aBase, r6, kMain, K);
      acc7 += bk * loadA4(aBase, r7, kMain, K);
    }
  }
  storeRow(cBase, r0, col, acc0);
  if (ROWS > 1u) { storeRow(cBase, row0 + 1u, col, acc1); }
  if (ROWS > 2u) {
    storeRow(cBase, row0 + 2u, col, acc2);
    storeRow(cBase, row0 + 3u, col, acc3);
  }
  if (ROWS > 4u) {
    storeRow(cBase, row0 + 4u, col, acc4);
    storeRow(cBase, row0 + 5u, col, acc5);
    storeRow(cBase, row0 + 6u, col, acc6);
    storeRow(cBase, row0 + 7u, col, acc7);
  }
}
