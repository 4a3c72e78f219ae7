// Row-pair losses over [rows, cols] tensors u and v, averaged over the rows a mask selects:
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

#include "common.wgsl" // workgroupSum3

override VARIANT: u32 = 0u;
override WRT_FIRST: bool = false; // backward: the gradient of u (else of v)

const WG: u32 = 64u;
// The floor on |u| |v|. In f32 this is 9.99999994e-9; the float64 twin uses 1e-8 itself.
const FLOOR: f32 = 1e-8;

struct Params {
  rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;               // [rows, cols]
@group(0) @binding(2) var<storage, read> v: array<f32>;               // [rows, cols]
@group(0) @binding(3) var<storage, read> mask: array<f32>;            // [rows], non-zero selects a row (maskSelects)
@group(0) @binding(4) var<storage, read_write> rowCoef: array<f32>;   // [rows, 4], see above
@group(0) @binding(5) var<storage, read_write> rowLoss: array<f32>;   // [rows] (selected rows only)
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;      // [1]: the mean
@group(0) @binding(7) var<storage, read_write> lossScale: array<f32>; // [1]: 1 / |selected|, 0 when none
@group(0) @binding(8) var<storage, read> savedCoef: array<f32>;       // backward: rowCoef of the forward
@group(0) @binding(9) var<storage, read> savedScale: array<f32>;      // backward: lossScale of the forward
@group(0) @binding(10) var<storage, read> grad: array<f32>;           // backward: d(out)/d(loss), one element
@group(0) @binding(11) var<storage, read_write> gradOut: array<f32>;  // [rows, cols]

var<workgroup> rowSelected: u32;

// Per-row value and gradient coefficients from the row sums: (u.v, |u|^2, |v|^2) for the cosine
// variants, (|u - v|^2, -, -) for the distance.
fn finishRow(row: u32, a: f32, b: f32, c: f32) {
  if (VARIANT == 3u) {
    let dist = sqrt(a);
    // The gradient of |w| at w = 0 is taken as 0 (h == ht exactly before the first transformed token).
    let k = select(0.0, 1.0 / dist, dist > 0.0);
    rowLoss[row] = dist;
    rowCoef[4u * row] = -k;
    rowCoef[4u * row + 1u] = k;
    rowCoef[4u * row + 2u] = -k;
    rowCoef[4u * row + 3u] = k;
    return;
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
  rowLoss[row] = value;
  rowCoef[4u * row] = outer * vu;
  rowCoef[4u * row + 1u] = outer * vv;
  rowCoef[4u * row + 2u] = outer * uv;
  rowCoef[4u * row + 3u] = outer * uu;
}

// One workgroup per row (grid-stride over rows), its threads striding over the features.
// Rows outside the mask are skipped entirely: nothing of theirs is read or written.
@compute @workgroup_size(WG)
fn rowPairForward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let cols = params.cols;
  for (var row = wid.x; row < params.rows; row += groups.x) {
    if (lid == 0u) { rowSelected = select(0u, 1u, maskSelects(mask[row])); }
    if (workgroupUniformLoad(&rowSelected) == 0u) { continue; }
    let base = row * cols;
    var a = 0.0;
    var b = 0.0;
    var c = 0.0;
    for (var k = lid; k < cols; k += WG) {
      let x = u[base + k];
      let y = v[base + k];
      if (VARIANT == 3u) {
        // Differences first: |u|^2 + |v|^2 - 2 u.v would cancel when h is close to ht.
        a += (x - y) * (x - y);
      } else {
        a += x * y;
        b += x * x;
        c += y * y;
      }
    }
    let sums = workgroupSum3(lid, vec3<f32>(a, b, c));
    if (lid == 0u) { finishRow(row, sums.x, sums.y, sums.z); }
  }
}

// The gradient of u or v: g / |selected| times the row's combination of u and v on selected rows,
// 0 elsewhere. One elementwise pass, grid-stride over all elements.
@compute @workgroup_size(WG)
fn rowPairBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let n = params.rows * params.cols;
  let scale = grad[0] * savedScale[0];
  for (var i = gid.x; i < n; i += groups.x * WG) {
    let row = i / params.cols;
    var g = 0.0;
    if (maskSelects(mask[row])) {
      if (WRT_FIRST) {
        g = (savedCoef[4u * row + 3u] * u[i] + savedCoef[4u * row + 2u] * v[i]) * scale;
      } else {
        g = (savedCoef[4u * row] * u[i] + savedCoef[4u * row + 1u] * v[i]) * scale;
      }
    }
    gradOut[i] = g;
  }
}
