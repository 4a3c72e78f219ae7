/**
 * Runs every loss family's benchmark module (`bench/loss-*.ts`, each exporting `benchmarks()`)
 * one after the other. A family that throws (for instance because its fused and composed losses
 * disagree) becomes an error row, so that the others still run and the failure is reported.
 */
import * as catalyst from './loss-catalyst';
import * as cosine from './loss-cosine';
import * as crossEntropy from './loss-crossEntropy';
import * as lmHeadCrossEntropy from './loss-lmHeadCrossEntropy';
import * as medianNorm from './loss-medianNorm';
import * as mutualInformation from './loss-mutualInformation';

/** Median ms of one forward + backward: fused kernels, the same loss from generic ops, and the float64 twin. */
export interface LossBenchRow {
  family: string;
  name: string;
  fusedMs: number;
  composedMs: number;
  float64Ms: number;
  /**
   * Most bytes the buffer pool handed out during one step, above what was live before it, for the
   * fused and the composed (unfused) path; reported by the families where memory is the point.
   */
  peakBytes?: { fused: number; composed: number };
}

/** A family whose benchmark threw. */
export interface LossBenchError {
  family: string;
  error: string;
}

/** The loss families, by module name, in the order they run. */
export const LOSS_FAMILIES: ReadonlyArray<{ family: string; benchmarks: () => Promise<Omit<LossBenchRow, 'family'>[]> }> = [
  { family: 'loss-crossEntropy', benchmarks: crossEntropy.benchmarks },
  { family: 'loss-lmHeadCrossEntropy', benchmarks: lmHeadCrossEntropy.benchmarks },
  { family: 'loss-cosine', benchmarks: cosine.benchmarks },
  { family: 'loss-medianNorm', benchmarks: medianNorm.benchmarks },
  { family: 'loss-catalyst', benchmarks: catalyst.benchmarks },
  { family: 'loss-mutualInformation', benchmarks: mutualInformation.benchmarks },
];

/** Runs every family; `onFamily` is called after each (for progress lines). */
export async function lossBenchmarks(onFamily?: (family: string) => void): Promise<Array<LossBenchRow | LossBenchError>> {
  const out: Array<LossBenchRow | LossBenchError> = [];
  for (const { family, benchmarks } of LOSS_FAMILIES) {
    try {
      for (const row of await benchmarks()) out.push({ family, ...row });
    } catch (e) {
      out.push({ family, error: e instanceof Error ? e.message : String(e) });
    }
    onFamily?.(family);
  }
  return out;
}
