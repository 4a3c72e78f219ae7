// The std-log-ratio loss -mean over (N=1 positions, all j) of log(sigma_j / s_j) and its backward.
// Two deterministic passes: one thread per piece of a row (src/losses/rowLayout.ts: no barriers,
// vec4 reads where d is a multiple of 4) writes the piece's sum, then one workgroup adds up the
// pieces of the selected positions and counts them.

#include "common.wgsl" // workgroupSum2

const WG: u32 = 256u;

struct Params {
  rows: u32,      // positions (B*T)
  d: u32,
  segments: u32,  // pieces per row
  segChunks: u32, // chunks of 4 columns per piece
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sigma: array<f32>;
@group(0) @binding(2) var<storage, read> columnStd: array<f32>;
@group(0) @binding(1) var<storage, read> sigma4: array<vec4<f32>>;     // sigma (d a multiple of 4)
@group(0) @binding(2) var<storage, read> columnStd4: array<vec4<f32>>; // columnStd (d a multiple of 4)
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> pieces: array<f32>;     // [rows * segments]
@group(0) @binding(6) var<storage, read> gradOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> count: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> out4: array<vec4<f32>>; // the gradient (d a multiple of 4)

// The chunks of piece `item`: [first, end), in the row `row`.
fn pieceOf(item: u32) -> RowPiece {
  return rowPiece(item, params.segments, params.segChunks, params.d);
}

// Per piece of a selected position: the sum of log(sigma / s) over its columns. Unselected
// positions are skipped (their log may be NaN; their pieces are not written).
@compute @workgroup_size(WG)
fn stdLogRatioPieces(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    let base = piece.row * (params.d / 4u);
    var s = 0.0;
    for (var c = piece.first; c < piece.end; c++) {
      s += dot(log(sigma4[base + c] / columnStd4[c]), vec4<f32>(1.0));
    }
    pieces[item] = s;
  }
}

@compute @workgroup_size(WG)
fn stdLogRatioPiecesRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    if (!maskSelects(mask[piece.row])) { continue; }
    var s = 0.0;
    for (var j = 4u * piece.first; j < min(d, 4u * piece.end); j++) {
      s += log(sigma[piece.row * d + j] / columnStd[j]);
    }
    pieces[item] = s;
  }
}

// One workgroup: out = -sum / (count * d) over the selected positions' pieces, 0 when nothing is
// selected, in a fixed order; count kept for the backward.
@compute @workgroup_size(WG)
fn stdLogRatioFinish(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  var c = 0.0;
  for (var row = lid; row < params.rows; row += WG) {
    if (!maskSelects(mask[row])) { continue; }
    for (var seg = 0u; seg < params.segments; seg++) { s += pieces[row * params.segments + seg]; }
    c += 1.0;
  }
  let r = workgroupSum2(lid, vec2<f32>(s, c));
  if (lid == 0u) {
    let denominator = r.y * f32(params.d);
    out[0] = select(0.0, -r.x / denominator, denominator > 0.0);
    count[0] = r.y;
  }
}

// d/dsigma of -log(sigma / s) / (count * d) = -g / (sigma * count * d) on selected positions, 0
// elsewhere; one thread per piece, as in the forward.
fn backwardFactor(row: u32) -> f32 {
  let denominator = count[0] * f32(params.d);
  if (!maskSelects(mask[row]) || !(denominator > 0.0)) { return 0.0; }
  return -gradOut[0] / denominator;
}

@compute @workgroup_size(WG)
fn stdLogRatioBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let base = piece.row * (params.d / 4u);
    let k = backwardFactor(piece.row);
    if (k == 0.0) {
      // Zeros, not 0 / sigma: an unselected position's sigma may be 0 or NaN.
      for (var c = piece.first; c < piece.end; c++) { out4[base + c] = vec4<f32>(0.0); }
      continue;
    }
    for (var c = piece.first; c < piece.end; c++) { out4[base + c] = k / sigma4[base + c]; }
  }
}

@compute @workgroup_size(WG)
fn stdLogRatioBackwardRagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  for (var item = gid.x; item < params.rows * params.segments; item += groups.x * WG) {
    let piece = pieceOf(item);
    let k = backwardFactor(piece.row);
    for (var j = 4u * piece.first; j < min(d, 4u * piece.end); j++) {
      let i = piece.row * d + j;
      out[i] = select(k / sigma[i], 0.0, k == 0.0);
    }
  }
}
