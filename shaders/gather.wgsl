// Row gather (embedding lookup) and its backward, a deterministic scatter-add: each thread owns
// one feature column and walks the ids in order, so no two threads ever add to the same element
// and no float atomics are needed (WGSL has none), and the sum order is fixed.
// A table too large for one binding is stored as row blocks: each dispatch handles the ids that
// fall in its block's rows [rowStart, rowStart + rows); the first one also writes zeros for ids
// in no block. The table may be a packed 16-bit weight, unpacked as it loads.

const WG: u32 = 256u;

override TABLE_DTYPE: u32 = 0u; // 0 f32, 1 bf16, 2 f16 (two elements per word, element 2i low)

struct Params {
  count: u32,    // number of ids
  width: u32,    // row length d
  rows: u32,     // rows of this block of the table
  rowStart: u32, // the table row of the block's first row
  first: u32,    // 1: write zeros where the id is in no block, and report it (the first block's dispatch)
  tableRows: u32, // rows of the whole table (every block)
  checkSlot: u32, // this check's counters in `checks` (see GpuContext.dataCheck)
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>; // f32 bits, or packed 16-bit pairs
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> checks: array<atomic<u32>>;

fn readTable(e: u32) -> f32 {
  if (TABLE_DTYPE == 0u) { return bitcast<f32>(table[e]); }
  let word = table[e >> 1u];
  let high = (e & 1u) == 1u;
  if (TABLE_DTYPE == 1u) { return bitcast<f32>(select(word << 16u, word & 0xffff0000u, high)); }
  return unpack2x16float(word)[select(0u, 1u, high)];
}

// out[n, j] = table[ids[n], j]. An id outside the table (a negative i32 reads as a large u32)
// reads as zeros and is counted, with the first such position, in this check's counters: the
// host reports it at its next readback (ids given as host data are checked before any GPU work).
@compute @workgroup_size(WG)
fn gatherRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let total = params.count * params.width;
  for (var i = gid.x; i < total; i += groups.x * WG) {
    let n = i / params.width;
    let j = i % params.width;
    let local = ids[n] - params.rowStart; // wraps past `rows` for ids below the block
    if (local < params.rows) {
      out[i] = readTable(local * params.width + j);
    } else if (params.first == 1u) {
      out[i] = 0.0;
      if (j == 0u && ids[n] >= params.tableRows) {
        atomicAdd(&checks[2u * params.checkSlot], 1u);
        atomicMax(&checks[2u * params.checkSlot + 1u], 0xffffffffu - n); // max of ~n: the first position
      }
    }
  }
}

// out[v, j] = sum over n with ids[n] == rowStart + v of grad[n, j] (the gradient of one block).
// The thread that owns column j also zeroes it first: there is no barrier across workgroups, so
// nobody else may touch the column.
@compute @workgroup_size(WG)
fn scatterAddRows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var j = gid.x; j < params.width; j += groups.x * WG) {
    for (var v = 0u; v < params.rows; v++) { out[v * params.width + j] = 0.0; }
    for (var n = 0u; n < params.count; n++) {
      let local = ids[n] - params.rowStart;
      if (local < params.rows) { out[local * params.width + j] += grad[n * params.width + j]; }
    }
  }
}
