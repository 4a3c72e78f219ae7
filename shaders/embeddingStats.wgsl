// Column statistics of an embedding table [V, d]: the population standard deviation of every
// column. The vocabulary is cut into chunks (grid y) so that a narrow table still fills the device;
// each chunk's mean and sum of squared deviations are computed in two passes over the chunk (no
// E[x^2] - E[x]^2 cancellation), then combined exactly (Chan et al.'s pairwise update).

const WG: u32 = 256u;

struct Params {
  rows: u32,       // V
  d: u32,
  chunkRows: u32,  // rows per chunk (the last one may be shorter)
  chunks: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> partialMean: array<f32>; // [chunks, d]
@group(0) @binding(3) var<storage, read_write> partialM2: array<f32>;   // [chunks, d]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;         // [d]

// Thread = one column of one chunk; neighbouring threads read neighbouring columns (coalesced).
@compute @workgroup_size(WG)
fn columnMoments(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(workgroup_id) wid: vec3<u32>) {
  let d = params.d;
  let chunk = wid.y;
  let first = chunk * params.chunkRows;
  let last = min(first + params.chunkRows, params.rows);
  let n = f32(last - first);
  for (var j = gid.x; j < d; j += groups.x * WG) {
    var s = 0.0;
    for (var v = first; v < last; v++) { s += table[v * d + j]; }
    let mean = s / n;
    var m2 = 0.0;
    for (var v = first; v < last; v++) {
      let dev = table[v * d + j] - mean;
      m2 += dev * dev;
    }
    partialMean[chunk * d + j] = mean;
    partialM2[chunk * d + j] = m2;
  }
}

// std_j = sqrt(M2_j / V), M2 = sum_c M2_c + n_c (mean_c - mean)^2 over the chunks.
@compute @workgroup_size(WG)
fn columnStdFinalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let d = params.d;
  let total = f32(params.rows);
  for (var j = gid.x; j < d; j += groups.x * WG) {
    var mean = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
      let n = f32(min((c + 1u) * params.chunkRows, params.rows) - c * params.chunkRows);
      mean += n * partialMean[c * d + j];
    }
    mean = mean / total;
    var m2 = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
      let n = f32(min((c + 1u) * params.chunkRows, params.rows) - c * params.chunkRows);
      let dev = partialMean[c * d + j] - mean;
      m2 += partialM2[c * d + j] + n * dev * dev;
    }
    out[j] = sqrt(m2 / total);
  }
}
