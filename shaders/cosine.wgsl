// Row-pair losses over [rows, cols] tensors u and v (bindings uRows, vRows), averaged over the rows a mask selects:
//   VARIANT 0: 1 - cos(u, v)   (distillationLayerCosineDistanceLoss, u = h, v = ht)
//   VARIANT 1: cos(u, v)       (inputEmbeddingSimilarityLoss, u = x, v = xt)
//   VARIANT 2: |cos(u, v)|     (absoluteCosineSimilarityPenalty, u = x, v = xt)
//   VARIANT 3: ||u - v||_2     (distillationLayerL2DistanceLoss, u = h, v = ht)
// with cos(u, v) = u.v / max(|u| |v|, 1e-8). The L2 distance lives here too because it is the same
// row reduction and the same gradient shape.
//
// Every row's gradient is a combination of its two inputs:
//   d(row)/dv = coef[0] * u + coef[1] * v,   d(row)/du = coef[3] * u + coef[2] * v
// so the forward saves four coefficients per row and the backward is one elementwise pass.
//
// Layout (src/losses/rowLayout.ts): each row is cut into `segments` pieces of `segChunks` chunks of
// 4 columns, one thread per piece, grid-stride over the pieces, no barriers. rowPairPieces stores
// each piece's sums; rowPairFinish (one workgroup) adds up each row's pieces, writes its value and
// coefficients, and takes the masked mean. Rows whose length is a multiple of 4 read vec4s (the *4
// bindings); other rows read scalars (the Ragged entry points).

#include "common.wgsl" // workgroupSum2

override VARIANT: u32 = 0u;
override WRT_FIRST: bool = false; // backward: the gradient of u (else of v)

const WG: u32 = 64u;
// The floor on |u| |v|. In f32 this is 9.99999994e-9; the float64 twin uses 1e-8 itself.
const FLOOR: f32 = 1e-8;

struct Params {
  rows: u32,
  cols: u32,
  segments: u32,  // pieces per row
  segChunks: u32, // chunks of 4 columns per piece
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> uRows: array<f32>;               // [rows, cols] (ragged rows)
@group(0) @binding(2) var<storage, read> vRows: array<f32>;               // [rows, cols] (ragged rows)
@group(0) @binding(1) var<storage, read> uRows4: array<vec4<f32>>;        // uRows (cols a multiple of 4)
@group(0) @binding(2) var<storage, read> vRows4: array<vec4<f32>>;        // vRows (cols a multiple of 4)
@group(0) @binding(3) var<storage, read> mask: array<f32>;            // [rows], non-zero selects a row (maskSelects)
@group(0) @binding(4) var<storage, read_write> rowCoef: array<f32>;   // [rows, 4], see above
@group(0) @binding(5) var<storage, read_write> pieces: array<f32>;    // [rows * segments, 3]: the pieces' sums
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;      // [1]: the mean
@group(0) @binding(7) var<storage, read_write> lossScale: array<f32>; // [1]: 1 / |selected|, 0 when none
@group(0) @binding(8) var<storage, read> savedCoef: array<f32>;       // backward: rowCoef of the forward
@group(0) @binding(9) var<storage, read> savedScale: array<f32>;      // backward: lossScale of the forward
@group(0) @binding(10) var<storage, read> grad: array<f32>;           // backward: d(out)/d(loss), one element
@group(0) @binding(11) var<storage, read_write> gradOut: array<f32>;  // [rows, cols] (ragged rows)
@group(0) @binding(11) var<storage, read_write> gradOut4: array<vec4<f32>>;

// Per-row value (returned) and gradient coefficients (stored) from the row sums: (u.v, |u|^2,
// |v|^2) for the cosine variants, (|u - v|^2, -, -) for the distance.
fn finishRow(row: u32, a: f32, b: f32, c: f32) -> f32 {
  if (VARIANT == 3u) {
    let dist = sqrt(a);
    // The gradient of |w| at w = 0 is taken as 0 (h == ht exactly before the first transformed token).
    let k = select(0.0, 1.0 / dist, dist > 0.0);
    rowCoef[4u * row] = -k;
    rowCoef[4u * row + 1u] = k;
    rowCoef[4u * row + 2u] = -k;
    rowCoef[4u * row + 3u] = k;
    return dist;
  }
  // sqrt of each factor, not of the product: |u|^2 |v|^2 overflows f32 long before |u| |v| does.
  let product = sqrt(b) * sqrt(c);
  var cosine: f32;
  var vu: f32; var vv: f32; var uv: f32; var uu: f32;
  if (product >= FLOOR) {
    // d cos / dv = u / (|u||v|) - cos * v / |v|^2, and symmetrically for u.
    cosine = a / product;
    vu = 1.0 / product;
    vv = -cosine / c;
    uv = 1.0 / product;
    uu = -cosine / b;
  } else {
    // The floor is active: cos = u.v / 1e-8, so d cos / dv = u / 1e-8 (no norm terms). This also
    // covers u = 0 or v = 0, where the norms have no derivative.
    cosine = a / FLOOR;
    vu = 1.0 / FLOOR;
    vv = 0.0;
    uv = 1.0 / FLOOR;
    uu = 0.0;
  }
  var outer = 1.0;
  var value = cosine;
  if (VARIANT == 0u) { outer = -1.0; value = 1.0 - cosine; }
  if (VARIANT == 2u) { outer = sign(cosine); value = abs(cosine); } // d|c| = sign(c) dc, 0 at c = 0
  rowCoef[4u * row] = outer * vu;
  rowCoef[4u * row + 1u] = outer * vv;
  rowCoef[4u * row + 2u] = outer * uv;
  rowCoef[4u * row + 3u] = outer * uu;
  return value;
}

// The sums of a chunk of up to four columns (zeros in the padding of a ragged row).
fn chunkSums(x: vec4<f32>, y: vec4<f32>) -> vec3<f32> {
  if (VARIANT == 3u) {
    // Differences first: |u|^2 + |v|^2 - 2 u.v would cancel when h is close to ht.
    let w = x - y;
    return vec3<f32>(dot(w, w), 0.0, 0.0);
  }
  return vec3<f32>(dot(x, y), dot(x, x), dot(y, y));
}

// The chunks of piece `item`: [first, end), in the row `row`.
fn pieceOf(item: u32) -> RowPiece {
  return rowPiece(item, params.segments, params.segChunks, params.cols);
}

fn storePiece(item: u32, sums: vec3<f32>) {
  pieces[3u * item] = sums.x;
  pieces[3u * item + 1u] = sums.y;
  pieces[3u * item + 2u] = sums.z;
}

// Rows outside the mask are skipped entirely: nothing of theirs is read or written.
@compute @workgroup_size(WG)
fn rowPairPieces(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * (params.cols / 4u);
    var sums = vec3<f32>(0.0);
    for (var c = piece.first; c < piece.end; c++) { sums += chunkSums(uRows4[base + c], vRows4[base + c]); }
    storePiece(item, sums);
  }
}

@compute @workgroup_size(WG)
fn rowPairPiecesRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let cols = params.cols;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * cols;
    var sums = vec3<f32>(0.0);
    for (var col = 4u * piece.first; col < min(cols, 4u * piece.end); col++) {
      sums += chunkSums(vec4<f32>(uRows[base + col], 0.0, 0.0, 0.0), vec4<f32>(vRows[base + col], 0.0, 0.0, 0.0));
    }
    storePiece(item, sums);
  }
}

// One workgroup: each selected row's value and coefficients from its pieces, and the mean of the
// values in a fixed order (deterministic). Unselected rows take no part (their pieces were never
// written); an empty selection gives 0, never 0/0, and a lossScale of 0 (zero gradients).
@compute @workgroup_size(WG)
fn rowPairFinish(@builtin(local_invocation_index) lid: u32) {
  var total = 0.0;
  var count = 0.0;
  for (var row = lid; row < params.rows; row += WG) {
    if (!maskSelects(mask[row])) { continue; }
    var sums = vec3<f32>(0.0);
    for (var seg = 0u; seg < params.segments; seg++) {
      let o = 3u * (row * params.segments + seg);
      sums += vec3<f32>(pieces[o], pieces[o + 1u], pieces[o + 2u]);
    }
    total += finishRow(row, sums.x, sums.y, sums.z);
    count += 1.0;
  }
  let r = workgroupSum2(lid, vec2<f32>(total, count));
  if (lid == 0u) {
    let n = r.y;
    loss[0] = select(0.0, r.x / n, n > 0.0);
    lossScale[0] = select(0.0, 1.0 / n, n > 0.0);
  }
}

// The gradient of u or v: g / |selected| times the row's combination of u and v on selected rows,
// 0 elsewhere; one thread per piece as in the forward, no barriers.
@compute @workgroup_size(WG)
fn rowPairBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let scale = grad[0] * savedScale[0];
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let row = piece.row;
    let base = row * (params.cols / 4u);
    if (!maskSelects(mask[row])) {
      // Zeros, not 0 * u: an unselected row's values may be NaN or infinite.
      for (var c = piece.first; c < piece.end; c++) { gradOut4[base + c] = vec4<f32>(0.0); }
      continue;
    }
    let ku = select(savedCoef[4u * row], savedCoef[4u * row + 3u], WRT_FIRST) * scale;
    let kv = select(savedCoef[4u * row + 1u], savedCoef[4u * row + 2u], WRT_FIRST) * scale;
    for (var c = piece.first; c < piece.end; c++) { gradOut4[base + c] = ku * uRows4[base + c] + kv * vRows4[base + c]; }
  }
}

@compute @workgroup_size(WG)
fn rowPairBackwardRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let cols = params.cols;
  let scale = grad[0] * savedScale[0];
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let row = piece.row;
    let selected = maskSelects(mask[row]);
    for (var col = 4u * piece.first; col < min(cols, 4u * piece.end); col++) {
      let i = row * cols + col;
      var g = 0.0;
      if (selected) {
        if (WRT_FIRST) {
          g = (savedCoef[4u * row + 3u] * uRows[i] + savedCoef[4u * row + 2u] * vRows[i]) * scale;
        } else {
          g = (savedCoef[4u * row] * uRows[i] + savedCoef[4u * row + 1u] * vRows[i]) * scale;
        }
      }
      gradOut[i] = g;
    }
  }
}
