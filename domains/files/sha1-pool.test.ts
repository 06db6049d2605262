import { createHash } from "node:crypto";
import v8 from "node:v8";
import { describe, expect, it } from "vitest";
import { eventually } from "../../test/helpers/context.js";
import { createSha1Pool } from "./sha1-pool.js";

const MB = 1_000_000;

// V8's memory reducer may collect the garbage of an idle process some seconds later, by chance;
// off here (for the hashing threads this file starts), only the pool's own request frees buffers.
v8.setFlagsFromString("--no-memory-reducer");

describe("SHA-1 pool", () => {
  it("hashes chunks in place, each and the whole file", async () => {
    const pool = createSha1Pool({ keepIdleBytes: 0, threads: 1 });
    const session = pool.openSession({ whole: true });
    const parts = ["abc", "defgh"].map((text) => {
      const buffer = pool.acquireBuffer(text.length);
      buffer.write(text);
      return buffer;
    });
    const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");
    expect(await Promise.all(parts.map((p) => session.chunk(p)))).toEqual([sha1("abc"), sha1("defgh")]);
    expect(await session.finish()).toBe(sha1("abcdefgh"));
    await pool.close();
  });

  it("frees the buffers it drops, though a hashing thread has seen them and nothing else needs memory", async () => {
    const pool = createSha1Pool({ keepIdleBytes: 0, threads: 1 });
    const session = pool.openSession({ whole: false });
    const buffers = Array.from({ length: 10 }, () => pool.acquireBuffer(8 * MB).fill(1));
    for (const buffer of buffers) await session.chunk(buffer);
    const held = process.memoryUsage().arrayBuffers;
    // The pool keeps 32 MB of them idle, and drops the other 48 MB.
    for (const buffer of buffers.splice(0)) pool.releaseBuffer(buffer);
    expect(pool.idleBytes).toBe(32 * MB);
    // (Measured from the high point: collections may free other garbage meanwhile, never 32 MB.)
    await eventually(async () => (held - process.memoryUsage().arrayBuffers >= 32 * MB ? true : undefined));
    await pool.close();
  });
});
