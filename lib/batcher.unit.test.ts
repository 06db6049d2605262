import { describe, expect, it } from "vitest";
import { createBatcher } from "./batcher.js";

describe("createBatcher", () => {
  it("writes items added together as one batch, and later ones in the next", async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number>({
      maxBatch: 100,
      maxInFlight: 1,
      flush: async (items) => {
        batches.push(items);
        await new Promise((r) => setTimeout(r, 20));
      },
    });
    const first = [1, 2, 3].map((n) => batcher.add(n));
    await new Promise((r) => setImmediate(r));
    const second = [4, 5].map((n) => batcher.add(n));
    await Promise.all([...first, ...second]);
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it("splits at maxBatch", async () => {
    const sizes: number[] = [];
    const batcher = createBatcher<number>({
      maxBatch: 4,
      flush: async (items) => void sizes.push(items.length),
    });
    await Promise.all(Array.from({ length: 10 }, (_, i) => batcher.add(i)));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(10);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
  });

  it("rejects every caller of a failed batch, and keeps working afterwards", async () => {
    let fail = true;
    const batcher = createBatcher<number>({
      maxBatch: 10,
      flush: async () => {
        if (fail) throw new Error("db down");
      },
    });
    const results = await Promise.allSettled([batcher.add(1), batcher.add(2)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    fail = false;
    await expect(batcher.add(3)).resolves.toBeUndefined();
  });

  it("drain waits for everything in flight", async () => {
    const done: number[] = [];
    const batcher = createBatcher<number>({
      maxBatch: 1,
      maxInFlight: 1,
      flush: async ([n]) => {
        await new Promise((r) => setTimeout(r, 5));
        done.push(n ?? -1);
      },
    });
    void batcher.add(1);
    void batcher.add(2);
    await batcher.drain();
    expect(done).toEqual([1, 2]);
  });

  it("refuses items at once beyond maxQueued while flushes hang, and takes them again once they end", async () => {
    let release = () => {};
    const hanging = new Promise<void>((r) => {
      release = r;
    });
    const flushed: number[][] = [];
    const batcher = createBatcher<number>({
      maxBatch: 1,
      maxInFlight: 1,
      maxQueued: { items: 2, error: () => new Error("queue full") },
      flush: async (items) => {
        flushed.push(items);
        await hanging;
      },
    });
    const first = batcher.add(1);
    await new Promise((r) => setImmediate(r));
    // 1 is in flight and hangs; 2 and 3 wait; 4 finds the queue full.
    const waiting = [batcher.add(2), batcher.add(3)];
    await expect(batcher.add(4)).rejects.toThrow("queue full");
    expect(flushed).toEqual([[1]]);
    release();
    await Promise.all([first, ...waiting]);
    await expect(batcher.add(5)).resolves.toBeUndefined();
    expect(flushed).toEqual([[1], [2], [3], [5]]);
  });
});
