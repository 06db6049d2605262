// Group commit: callers add items one at a time and await their own; items that arrive
// while a flush is running are written together by the next flush. Under load batches
// grow by themselves; when idle, one item is written at once with no added latency.
export interface Batcher<T> {
  add(item: T): Promise<void>;
  /** Resolves when everything added so far has been flushed (or failed). */
  drain(): Promise<void>;
}

interface Pending<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export function createBatcher<T>(opts: {
  maxBatch: number;
  maxInFlight?: number;
  /**
   * At most this many items wait for a flush; beyond, add() rejects at once with `error()`. So a
   * flush that hangs (its server frozen) holds bounded memory instead of every caller's item.
   */
  maxQueued?: { items: number; error: () => unknown };
  flush: (items: T[]) => Promise<void>;
}): Batcher<T> {
  const maxInFlight = opts.maxInFlight ?? 2;
  let queue: Pending<T>[] = [];
  let inFlight = 0;
  let scheduled = false;
  const idle: (() => void)[] = [];

  const pump = () => {
    scheduled = false;
    while (queue.length > 0 && inFlight < maxInFlight) {
      const batch = queue.slice(0, opts.maxBatch);
      queue = queue.slice(batch.length);
      inFlight++;
      opts
        .flush(batch.map((p) => p.item))
        .then(
          () => {
            for (const p of batch) p.resolve();
          },
          (err: unknown) => {
            for (const p of batch) p.reject(err);
          },
        )
        .finally(() => {
          inFlight--;
          if (queue.length > 0) pump();
          else if (inFlight === 0) for (const done of idle.splice(0)) done();
        });
    }
  };

  return {
    add(item) {
      if (opts.maxQueued && queue.length >= opts.maxQueued.items)
        return Promise.reject(opts.maxQueued.error());
      return new Promise<void>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        // Let the adds of this tick join one batch.
        if (!scheduled && inFlight < maxInFlight) {
          scheduled = true;
          setImmediate(pump);
        }
      });
    },
    drain() {
      if (queue.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idle.push(resolve));
    },
  };
}
