// The gradient of broadcasting: sums a gradient back to the shape of a broadcast operand, over
// the axes where that operand has size 1 (or is missing). Not a reduction over rows, so it has
// its own small family apart from reduce.wgsl.

const WG: u32 = 256u;

struct ShapeParams {
  n: u32,
  rank: u32,
  reducedCount: u32,
  _pad: u32,
  outShape: array<vec4<u32>, 2>,
  inStrides: array<vec4<u32>, 2>,
  reducedShape: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> shapeParams: ShapeParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

// out[o] = sum of x over the axes where the output has size 1 (a broadcast operand's gradient).
@compute @workgroup_size(WG)
fn sumToShape(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let rank = shapeParams.rank;
  for (var o = gid.x; o < shapeParams.n; o += groups.x * WG) {
    var rem = o;
    var base = 0u;
    for (var k = i32(rank) - 1; k >= 0; k--) {
      let dim = at(shapeParams.outShape, u32(k));
      base += (rem % dim) * at(shapeParams.inStrides, u32(k));
      rem = rem / dim;
    }
    var total = 0.0;
    for (var m = 0u; m < shapeParams.reducedCount; m++) {
      var r = m;
      var offset = base;
      for (var k = i32(rank) - 1; k >= 0; k--) {
        let dim = at(shapeParams.reducedShape, u32(k));
        offset += (r % dim) * at(shapeParams.inStrides, u32(k));
        r = r / dim;
      }
      total += x[offset];
    }
    out[o] = total;
  }
}
