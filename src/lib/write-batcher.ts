/**
 * Coalesces writes issued close together into one call (one transaction): a write waits for the end of the
 * current turn of the event loop, and writes arriving while a batch is being written go into the next one. Idle,
 * it adds one `setImmediate`; under load, N outcomes cost one commit instead of N. Hand-written: a few lines, and
 * the libraries that do this (dataloader) are built for reads, not for fencing-sensitive writes.
 *
 * A failing batch is retried item by item, so one bad write fails only its own caller.
 */
export type WriteBatcher<I, O> = (item: I) => Promise<O>;

interface Pending<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export function createWriteBatcher<I, O>(write: (items: readonly I[]) => Promise<readonly O[]>, maxBatch = 256): WriteBatcher<I, O> {
  let queue: Array<Pending<I, O>> = [];
  let scheduled = false;
  let writing = false;

  const writeOneByOne = async (batch: ReadonlyArray<Pending<I, O>>): Promise<void> => {
    for (const entry of batch) {
      try {
        const [result] = await write([entry.item]);
        entry.resolve(result as O);
      } catch (error) {
        entry.reject(error);
      }
    }
  };

  const flush = async (): Promise<void> => {
    scheduled = false;
    if (writing || queue.length === 0) return;
    writing = true;
    const batch = queue.slice(0, maxBatch);
    queue = queue.slice(maxBatch);
    try {
      const results = await write(batch.map((entry) => entry.item));
      batch.forEach((entry, index) => entry.resolve(results[index] as O));
    } catch (error) {
      if (batch.length === 1) batch[0]?.reject(error);
      else await writeOneByOne(batch);
    } finally {
      writing = false;
      if (queue.length > 0) schedule();
    }
  };

  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => void flush());
  };

  return (item) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      schedule();
    });
}
