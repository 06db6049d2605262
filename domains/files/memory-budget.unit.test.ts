import { afterAll, describe, expect, it } from "vitest";
import { createMemoryBudget } from "./memory-budget.js";
import { createSha1Pool } from "./sha1-pool.js";

const pool = createSha1Pool({ keepIdleBytes: 0, threads: 1 });
afterAll(() => pool.close());

describe("memory budget", () => {
  it("keeps a transfer's first buffer to its end, and lends more only while there is room", async () => {
    const budget = createMemoryBudget({ limitBytes: 3000, pool });
    const a = await budget.open(1000, 3, 10);
    if (!a) throw new Error("no buffers");
    expect(budget.inUseBytes).toBe(1000);
    const one = a.tryAcquire(1000);
    const two = a.tryAcquire(600);
    const three = a.tryAcquire(1000);
    expect([one?.length, two?.length, three?.length]).toEqual([1000, 600, 1000]);
    // At most three buffers, and the budget is spent anyway.
    expect(a.tryAcquire(1000)).toBeUndefined();
    expect(budget.inUseBytes).toBe(3000);
    // A second transfer finds no room and gives up after its wait.
    expect(await budget.open(1000, 3, 10)).toBeUndefined();
    // What comes back beyond the first buffer goes back to the budget at once.
    a.release(three as Buffer);
    a.release(two as Buffer);
    expect(budget.inUseBytes).toBe(1000);
    a.release(one as Buffer);
    expect(budget.inUseBytes).toBe(1000);
    a.release(one as Buffer);
    expect(budget.inUseBytes).toBe(1000);
    a.close();
    expect(budget.inUseBytes).toBe(0);
    expect(budget.peakBytes).toBe(3000);
  });

  it("serves transfers waiting for their first buffer before lending more to those under way", async () => {
    const budget = createMemoryBudget({ limitBytes: 2000, pool });
    const a = await budget.open(1000, 3, 10);
    const b = await budget.open(1000, 3, 10);
    if (!a || !b) throw new Error("no buffers");
    const held = a.tryAcquire(1000) as Buffer;
    const waiting = budget.open(1000, 3, 10_000);
    const later = budget.open(1000, 3, 10_000);
    // b ends: its share goes to the first waiting, not to a's read-ahead.
    b.close();
    const c = await waiting;
    expect(c).toBeDefined();
    expect(a.tryAcquire(1000)).toBeUndefined();
    a.release(held);
    a.close();
    expect(await later).toBeDefined();
    expect(budget.inUseBytes).toBe(2000);
  });

  it("gives a transfer's share back only as its buffers come back after close, and fails its waits", async () => {
    const budget = createMemoryBudget({ limitBytes: 1000, pool });
    const a = await budget.open(1000, 1, 10);
    if (!a) throw new Error("no buffers");
    const out = await a.acquire(1000);
    const next = a.acquire(1000);
    a.close();
    await expect(next).rejects.toThrow(/over/);
    // Still lent: a socket or a write may be reading it.
    expect(budget.inUseBytes).toBe(1000);
    a.release(out);
    expect(budget.inUseBytes).toBe(0);
  });

  it("lets a lone transfer start even when its chunks are larger than the limit", async () => {
    const budget = createMemoryBudget({ limitBytes: 1000, pool });
    const a = await budget.open(5000, 2, 10);
    expect(a).toBeDefined();
    expect(await budget.open(10, 2, 10)).toBeUndefined();
    a?.close();
    expect(budget.inUseBytes).toBe(0);
  });
});
