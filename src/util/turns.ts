/**
 * Steps that take turns per key: a step runs once every step given before it for the same key has settled
 * (either way); steps of other keys run alongside. A key's chain is dropped once its last step settles. The
 * returned promise is the step's own (its failure is its caller's; the next step runs anyway).
 */
export class TurnsByKey {
  private readonly tails = new Map<string, Promise<void>>();

  take<T>(key: string, step: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(step);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, settled);
    void settled.then(() => {
      if (this.tails.get(key) === settled) this.tails.delete(key);
    });
    return run;
  }

  /** Whether a step of `key` is running or waiting. */
  has(key: string): boolean {
    return this.tails.has(key);
  }

  /** Settles once every step given so far has settled. */
  async drain(): Promise<void> {
    await Promise.all(this.tails.values());
  }
}
