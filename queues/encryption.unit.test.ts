import { describe, expect, it } from "vitest";
import { encryptionQueue } from "./encryption.js";

describe("the encryption queue's retries", () => {
  it("keep a sealed payload waiting in Redis for minutes at most, not days", () => {
    const { attempts = 1, backoff } = encryptionQueue.defaultJobOptions;
    if (typeof backoff !== "object" || backoff.type !== "exponential") throw new Error("exponential backoff");
    // BullMQ waits at most delay × 2^(n−1) after the n-th failed attempt (jitter only shortens it).
    let longestMs = 0;
    for (let n = 1; n < attempts; n++) longestMs += (backoff.delay ?? 0) * 2 ** (n - 1);
    expect(longestMs).toBeLessThanOrEqual(20 * 60_000);
    expect(attempts).toBeGreaterThanOrEqual(10);
  });
});
