import { describe, expect, it } from "vitest";
import { createConcurrencyGate } from "./concurrency-gate.js";
import { AppError } from "./errors.js";

/** A task that runs until its `finish` is called. */
function held() {
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return { task: () => done, finish };
}

describe("createConcurrencyGate", () => {
  it("runs at most `max` tasks, queues up to `queueMax`, and refuses the rest with 503 at once", async () => {
    const gate = createConcurrencyGate({ max: 2, queueMax: 1, what: "derivations", retryAfterSeconds: 1 });
    const tasks = [held(), held(), held()];
    const results = tasks.map((t) => gate.run(t.task));
    expect(gate.running).toBe(2);
    expect(gate.waiting).toBe(1);
    const refused = await gate.run(async () => "never").catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(AppError);
    expect(refused).toMatchObject({ code: "SERVICE_UNAVAILABLE", retryAfter: 1 });
    expect((refused as Error).message).toMatch(/too many derivations/);

    // A finished task hands its slot to the one waiting.
    tasks[0]?.finish();
    await results[0];
    expect(gate.running).toBe(2);
    expect(gate.waiting).toBe(0);
    for (const t of tasks) t.finish();
    await Promise.all(results);
    expect(gate.running).toBe(0);
  });

  it("frees the slot of a task that fails", async () => {
    const gate = createConcurrencyGate({ max: 1, queueMax: 0, what: "derivations", retryAfterSeconds: 1 });
    await expect(gate.run(() => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await gate.run(async () => "ran")).toBe("ran");
  });
});
