// Elementwise kernels: unary maps, binary arithmetic and a ternary select, with NumPy-style
// broadcasting through per-operand strides (a stride of 0 repeats an operand along that axis).
// The op is an override constant, so each (entry point, OP) pair compiles to a branch-free kernel.
// All loops are grid-stride: a few fat workgroups serve any size (software adapters pay per group).

#include "common.wgsl" // posInf, tanhAccurate, logAccurate

override OP: u32 = 0u;
// false: every operand is contiguous with the output's shape, so index i maps to i directly.
override STRIDED: bool = false;
override CONDITION_IS_FLOAT: bool = true;

const WG: u32 = 256u;
const MAX_RANK: u32 = 8u;

struct Params {
  n: u32,
  rank: u32,
  alpha: f32, // scalar argument: exponent of pow, factor of scale
  beta: f32,  // scalar argument: offset of scale
  outShape: array<vec4<u32>, 2>,
  aStrides: array<vec4<u32>, 2>,
  bStrides: array<vec4<u32>, 2>,
  cStrides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> cond: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> grad: array<f32>;            // swigluBackward: d out
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;      // swigluBackward: d up

fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

// Offsets into a, b and cond of output element i (row-major), from the strides.
fn offsets(i: u32) -> vec3<u32> {
  var rem = i;
  var o = vec3<u32>(0u, 0u, 0u);
  for (var k = i32(params.rank) - 1; k >= 0; k--) {
    let dim = at(params.outShape, u32(k));
    let c = rem % dim;
    rem = rem / dim;
    o += c * vec3<u32>(at(params.aStrides, u32(k)), at(params.bStrides, u32(k)), at(params.cStrides, u32(k)));
  }
  return o;
}

const GELU_C: f32 = 0.7978845608028654; // sqrt(2 / pi)

fn unaryOp(x: f32) -> f32 {
  switch OP {
    case 0u: { return -x; }
    case 1u: { return exp(x); }
    case 2u: { return logAccurate(x); } // the built-in is only 2^-21 absolute near 1
    case 3u: { return sqrt(x); }
    case 4u: { return tanhAccurate(x); } // the built-in is NaN from |x| = 50 on SwiftShader
    case 5u: { return abs(x); }
    case 6u: { // pow by a scalar; sign-correct for integer exponents of negative bases
      if (x == 0.0) {
        if (params.alpha > 0.0) { return 0.0; }
        if (params.alpha == 0.0) { return 1.0; }
        return posInf();
      }
      let m = exp2(params.alpha * log2(abs(x)));
      let odd = fract(params.alpha * 0.5) != 0.0 && fract(params.alpha) == 0.0;
      return select(m, -m, x < 0.0 && odd);
    }
    case 7u: { return x / (1.0 + exp(-x)); } // silu
    case 8u: { return 0.5 * x * (1.0 + tanhAccurate(GELU_C * (x + 0.044715 * x * x * x))); }
    case 9u: { return max(x, 0.0); } // relu
    case 10u: { return params.alpha * x + params.beta; } // scale
    case 12u: { // sigmoidRange: low + (high - low) * sigmoid(x), strictly inside (low, high)
      // sigmoid(x) rather than (1 + tanh(x/2)) / 2: near the floor it keeps full relative
      // precision. The clamp keeps the result off the bounds even where f32 saturates.
      let s = clamp(1.0 / (1.0 + exp(-x)), 1.4551915e-11, 0.99999994);
      return params.alpha + (params.beta - params.alpha) * s;
    }
    case 13u: { return params.beta; } // fill: a constant of x's shape (x is not read)
    default: { return x; } // copy (also expand and permute, through the strides)
  }
}

// d(unaryOp)/dx at x.
fn unaryDerivative(x: f32) -> f32 {
  switch OP {
    case 0u: { return -1.0; }
    case 1u: { return exp(x); }
    case 2u: { return 1.0 / x; }
    case 3u: { return 0.5 / sqrt(x); }
    case 4u: { let t = tanhAccurate(x); return 1.0 - t * t; }
    case 5u: { return sign(x); }
    case 6u: {
      if (params.alpha == 0.0) { return 0.0; }
      let p = params.alpha - 1.0;
      if (x == 0.0) { return select(select(0.0, 1.0, p == 0.0), 0.0, p > 0.0); }
      let m = exp2(p * log2(abs(x)));
      let odd = fract(p * 0.5) != 0.0 && fract(p) == 0.0;
      return params.alpha * select(m, -m, x < 0.0 && odd);
    }
    case 7u: { let s = 1.0 / (1.0 + exp(-x)); return s * (1.0 + x * (1.0 - s)); }
    case 8u: {
      let u = GELU_C * (x + 0.044715 * x * x * x);
      let t = tanhAccurate(u);
      let sech2 = 1.0 - t * t;
      // Where tanh saturates, sech2 is 0 and x * x may be inf (|x| > 1.8e19): 0 * inf is NaN.
      let slope = select(0.5 * x * sech2 * GELU_C * (1.0 + 3.0 * 0.044715 * x * x), 0.0, sech2 == 0.0);
      return 0.5 * (1.0 + t) + slope;
    }
    case 9u: { return select(0.0, 1.0, x > 0.0); }
    case 10u: { return params.alpha; }
    case 12u: { let s = 1.0 / (1.0 + exp(-x)); return (params.beta - params.alpha) * s * (1.0 - s); }
    default: { return 1.0; }
  }
}

fn binaryOp(x: f32, y: f32) -> f32 {
  switch OP {
    case 0u: { return x + y; }
    case 1u: { return x - y; }
    case 2u: { return x * y; }
    case 3u: { return x / y; }
    case 4u: { return max(x, y); }
    default: { return min(x, y); }
  }
}

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    var ia = i;
    if (STRIDED) { ia = offsets(i).x; }
    out[i] = unaryOp(a[ia]);
  }
}

// Gradient of a unary map: out = grad * f'(x); `b` holds the output gradient (same shape as x).
@compute @workgroup_size(WG)
fn unaryBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    out[i] = b[i] * unaryDerivative(a[i]);
  }
}

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    var o = vec3<u32>(i, i, i);
    if (STRIDED) { o = offsets(i); }
    out[i] = binaryOp(a[o.x], b[o.y]);
  }
}

fn truthy(bits: u32) -> bool {
  if (CONDITION_IS_FLOAT) { return bitcast<f32>(bits) != 0.0; }
  return bits != 0u;
}

// out = cond ? a : b. With OP = 1, b is not read and the unselected side is 0 (the backward's
// routing of a gradient to one branch).
@compute @workgroup_size(WG)
fn selectWhere(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    var o = vec3<u32>(i, i, i);
    if (STRIDED) { o = offsets(i); }
    let c = truthy(cond[o.z]);
    if (OP == 1u) { out[i] = select(0.0, a[o.x], c); }
    else if (OP == 2u) { out[i] = select(a[o.x], 0.0, c); }
    else { out[i] = select(b[o.y], a[o.x], c); }
  }
}

// The SwiGLU gate of a Llama MLP in one pass: out = silu(a) * b (a the gate projection, b the up
// projection, same shape), with silu and its derivative written exactly as the unary kernels
// write them, so the fused op gives the same bits as silu then mul.
fn siluOf(x: f32) -> f32 {
  return x / (1.0 + exp(-x));
}

@compute @workgroup_size(WG)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    out[i] = siluOf(a[i]) * b[i];
  }
}

// d a = (g b) silu'(a) into out, d b = g silu(a) into out2: one pass for both gradients.
@compute @workgroup_size(WG)
fn swigluBackward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += groups.x * WG) {
    let x = a[i];
    let g = grad[i];
    let s = 1.0 / (1.0 + exp(-x));
    out[i] = (g * b[i]) * (s * (1.0 + x * (1.0 - s)));
    out2[i] = g * siluOf(x);
  }
}
