// Row gather (embedding lookup) and its backward, a deterministic scatter-add: each thread owns
// one feature column and walks the ids in order, so no two threads ever add to the same element
// and no float atomics are needed (WGSL has none), and the sum order is fixed.

const WG: u32 = 256u;

struct Params {
  count: u32,  // number of ids
  width: u32,  // row length d
  rows: u32,   // table rows V
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// out[n, j] = table[ids[n], j]; an id outside [0, rows) reads as zeros (ids are checked on the host).
@compute @workgroup_size(WG)
fn gatherRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let total = params.count * params.width;
  for (var i = gid.x; i < total; i += groups.x * WG) {
    let n = i / params.width;
    let j = i % params.width;
    let id = ids[n];
    out[i] = select(0.0, table[id * params.width + j], id < params.rows);
  }
}

// out[v, j] = sum over n with ids[n] == v of grad[n, j]. The thread that owns column j also
// zeroes it first: there is no barrier across workgroups, so nobody else may touch the column.
@compute @workgroup_size(WG)
fn scatterAddRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var j = gid.x; j < params.width; j += groups.x * WG) {
    for (var v = 0u; v < params.rows; v++) { out[v * params.width + j] = 0.0; }
    for (var n = 0u; n < params.count; n++) {
      let id = ids[n];
      if (id < params.rows) { out[id * params.width + j] += grad[n * params.width + j]; }
    }
  }
}
