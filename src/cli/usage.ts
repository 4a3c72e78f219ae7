/** The CLI's two kinds of failure: a mistake in the command line (exit code 2) and a run that failed after it started (exit code 1). */

/** A mistake in the command line or in the files it names (exit code 2), found before any training. */
export class UsageError extends Error {
  /** @param message what is wrong and how to fix it. */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A run that failed after training started (exit code 1): training stopped, or the evaluation,
 * the cloak, the checkpoint or a file could not be made. What could be written was written first.
 */
export class RunError extends Error {
  /**
   * @param message what failed, and where the partial results are.
   * @param dir the run's folder.
   * @param written the files written there (`report.json` holds the error when it is among them).
   */
  constructor(
    message: string,
    readonly dir: string,
    readonly written: readonly string[],
  ) {
    super(message);
    this.name = 'RunError';
  }
}
