/** Plain-JS (Float32Array) reference kernels the GPU rows are compared with. */

/** Naive i-k-j matmul: c[M,N] = a[M,K] b[K,N] (c is overwritten). */
export function matmulIKJ(a: Float32Array, b: Float32Array, c: Float32Array, M: number, K: number, N: number): void {
  c.fill(0);
  for (let i = 0; i < M; i++) {
    const ci = i * N;
    for (let k = 0; k < K; k++) {
      const aik = a[i * K + k];
      const bk = k * N;
      for (let j = 0; j < N; j++) c[ci + j] += aik * b[bk + j];
    }
  }
}

/** c[M,N] = a[K,M]ᵀ b[K,N]. */
export function matmulTA(a: Float32Array, b: Float32Array, c: Float32Array, M: number, K: number, N: number): void {
  c.fill(0);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < M; i++) {
      const aki = a[k * M + i];
      if (aki === 0) continue;
      const ci = i * N;
      const bk = k * N;
      for (let j = 0; j < N; j++) c[ci + j] += aki * b[bk + j];
    }
  }
}

/** c[M,N] = a[M,K] b[N,K]ᵀ. */
export function matmulTB(a: Float32Array, b: Float32Array, c: Float32Array, M: number, K: number, N: number): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k] * b[j * K + k];
      c[i * N + j] = s;
    }
  }
}

/** Sum of all elements (a plain loop; f64 accumulator, as JS numbers are). */
export function sumAll(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

/** out[r] = sum of row r of x[rows, cols]. */
export function sumRows(x: Float32Array, out: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const base = r * cols;
    for (let c = 0; c < cols; c++) s += x[base + c];
    out[r] = s;
  }
}

/** Max-shifted softmax of each row of x[rows, cols] into out. */
export function softmaxRows(x: Float32Array, out: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[base + c]);
    let s = 0;
    for (let c = 0; c < cols; c++) {
      const e = Math.exp(x[base + c] - m);
      out[base + c] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let c = 0; c < cols; c++) out[base + c] *= inv;
  }
}

/** An element-by-element copy loop. */
export function copyLoop(src: Float32Array, dst: Float32Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = src[i];
}
