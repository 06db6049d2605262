// The memory budget of a process's file transfers (FILE_MEMORY_BUDGET_BYTES): the chunk buffers of
// every upload, download and verification come out of one limit, however many clients there are.
// A transfer reserves its first buffer before it starts and keeps it to its end, so it never waits
// for the budget half-way; the buffers it reads or writes ahead with are borrowed while the budget
// has room and given back as soon as they are free, so under pressure transfers read ahead less
// rather than stop.
import type { Sha1Pool } from "./sha1-pool.js";

/** One transfer's chunk buffers, from the pool, counted against the budget. */
export interface TransferBuffers {
  /**
   * A pooled buffer of `size` bytes (at most the transfer's chunk size) at once: a free one of the
   * transfer's own, or one more borrowed from the budget; undefined when neither is there.
   */
  tryAcquire(size: number): Buffer | undefined;
  /** A buffer as tryAcquire gives, waiting for one of the transfer's own to come back if need be. */
  acquire(size: number): Promise<Buffer>;
  /** Gives a buffer back, once nothing (a socket, a store write, a hash) reads it any more. */
  release(buffer: Buffer): void;
  /**
   * The transfer is over: its share of the budget goes back as its last buffers come back, and
   * acquire() fails from now on.
   */
  close(): void;
}

export interface MemoryBudget {
  readonly limitBytes: number;
  /** Bytes of chunk buffers that transfers hold now (the pool's idle buffers are not counted). */
  readonly inUseBytes: number;
  /** The most that transfers ever held at once. */
  readonly peakBytes: number;
  /**
   * A transfer's buffers, `chunkBytes` each and at most `maxBuffers` at once, its first one
   * reserved: waits up to `waitMs` for it (first come, first served); undefined if it did not come.
   */
  open(chunkBytes: number, maxBuffers: number, waitMs: number): Promise<TransferBuffers | undefined>;
}

export function createMemoryBudget(opts: { limitBytes: number; pool: Sha1Pool }): MemoryBudget {
  const { limitBytes, pool } = opts;
  let inUse = 0;
  let peak = 0;
  const waiting: { bytes: number; grant(): void }[] = [];

  // A lone transfer always gets its first buffer, even one larger than the limit (a file stored
  // under a larger FILE_CHUNK_SIZE): it could never be served otherwise.
  const fits = (bytes: number) => inUse === 0 || inUse + bytes <= limitBytes;
  const take = (bytes: number) => {
    inUse += bytes;
    peak = Math.max(peak, inUse);
  };
  const serveWaiting = () => {
    for (let next = waiting[0]; next && fits(next.bytes); next = waiting[0]) {
      waiting.shift();
      take(next.bytes);
      next.grant();
    }
  };
  const give = (bytes: number) => {
    inUse -= bytes;
    serveWaiting();
  };
  /** `bytes` at once, if they fit and no transfer waits for its first buffer (that one goes first). */
  const borrow = (bytes: number): boolean => {
    if (waiting.length > 0 || !fits(bytes)) return false;
    take(bytes);
    return true;
  };
  const reserve = (bytes: number, waitMs: number) =>
    new Promise<boolean>((resolve) => {
      if (borrow(bytes)) return resolve(true);
      const waiter = {
        bytes,
        grant: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        waiting.splice(waiting.indexOf(waiter), 1);
        resolve(false);
        // The ones behind it may fit where it did not.
        serveWaiting();
      }, waitMs);
      waiting.push(waiter);
    });

  function transferBuffers(chunkBytes: number, maxBuffers: number): TransferBuffers {
    /** Buffers' worth of the budget this transfer holds: at least the one reserved, until close. */
    let held = 1;
    const lent = new Set<Buffer>();
    const waiters: (() => void)[] = [];
    let closed = false;
    const giveBackSpare = () => {
      const keep = closed ? lent.size : Math.max(lent.size, 1);
      for (; held > keep; held--) give(chunkBytes);
    };
    const buffers: TransferBuffers = {
      tryAcquire(size) {
        if (closed) return undefined;
        if (lent.size >= held) {
          if (held >= maxBuffers || !borrow(chunkBytes)) return undefined;
          held++;
        }
        const buffer = pool.acquireBuffer(size, chunkBytes);
        lent.add(buffer);
        return buffer;
      },
      async acquire(size) {
        for (;;) {
          if (closed) throw new Error("the transfer is over");
          const buffer = buffers.tryAcquire(size);
          if (buffer) return buffer;
          await new Promise<void>((resolve) => waiters.push(resolve));
        }
      },
      release(buffer) {
        if (!lent.delete(buffer)) return;
        pool.releaseBuffer(buffer);
        giveBackSpare();
        waiters.shift()?.();
      },
      close() {
        closed = true;
        giveBackSpare();
        for (const wake of waiters.splice(0)) wake();
      },
    };
    return buffers;
  }

  return {
    limitBytes,
    get inUseBytes() {
      return inUse;
    },
    get peakBytes() {
      return peak;
    },
    async open(chunkBytes, maxBuffers, waitMs) {
      if (!(await reserve(chunkBytes, waitMs))) return undefined;
      return transferBuffers(chunkBytes, Math.max(1, maxBuffers));
    },
  };
}
