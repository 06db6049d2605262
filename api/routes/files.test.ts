import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileKeyPrefix } from "../../domains/files/store.js";
import { ANONYMOUS_TENANT } from "../../domains/identity/caller.js";
import { scanKeys } from "../../lib/redis.js";
import { chunkHashingQueue } from "../../queues/chunk-hashing.js";
import { enqueue } from "../../queues/contract.js";
import { createTestContext, eventually, type TestContext } from "../../test/helpers/context.js";
import { type ServedApp, serveApp } from "../../test/helpers/http.js";

const KIB = 1024;
const MIB = 1024 * KIB;
const sha1 = (b: Uint8Array) => createHash("sha1").update(b).digest("hex");
const path = (name: string) => `/v1/files/${encodeURIComponent(name)}`;

/** A chunked PUT of `name` left open for the test to write to (or not); errors are ignored. */
function openChunkedPut(port: number, name: string): http.ClientRequest {
  const req = http.request({
    host: "127.0.0.1",
    port,
    method: "PUT",
    path: path(name),
    headers: { "transfer-encoding": "chunked" },
    agent: false,
  });
  req.on("error", () => {});
  return req;
}
let seq = 0;
const uniqueName = (label = "f") => `${label}-${Date.now().toString(36)}-${seq++}`;

type ErrorJson = { error: { code: string; message: string; requestId: string; details?: unknown } };
type Stored = {
  name: string;
  size: number;
  sha1: string;
  chunkSize: number;
  chunks: number;
  expiresAt: string;
  verification: { queue: string; id: string; statusUrl: string };
};

/**
 * The store as the API sees it for callers without credentials (the anonymous tenant), for
 * reaching past the API: corrupting chunks, counting keys.
 */
const storeOf = (t: TestContext) => t.deps.services.files.storeFor(ANONYMOUS_TENANT);

async function keysOf(t: TestContext): Promise<string[]> {
  const found: string[] = [];
  for await (const keys of scanKeys(t.deps.fileStore, `${fileKeyPrefix(t.prefix)}*`)) found.push(...keys);
  return found;
}

async function dropKeys(t: TestContext) {
  const keys = await keysOf(t);
  for (let i = 0; i < keys.length; i += 500) await t.deps.fileStore.unlink(...keys.slice(i, i + 500));
}

const chunkKeysOf = async (t: TestContext, version: string) =>
  (await keysOf(t)).filter((k) => k.startsWith(`${fileKeyPrefix(t.prefix)}c:${version}:`));

const put = (t: TestContext, name: string, body?: Uint8Array, headers: Record<string, string> = {}) =>
  t.app.request(path(name), { method: "PUT", body, headers });

async function store(t: TestContext, name: string, body: Uint8Array): Promise<Stored> {
  const res = await put(t, name, body);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as Stored;
}

// ------------------------------------------------------------------ real HTTP

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The response ended with every byte Content-Length promised. */
  complete: boolean;
  error?: string;
}

/** One request over a real socket; `body` chunks are written with backpressure. */
function request(
  port: number,
  method: string,
  urlPath: string,
  opts: {
    headers?: Record<string, string | number>;
    body?: Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
    /** The client's own address (any 127.x.y.z): a client of its own for per-client limits. */
    localAddress?: string;
  } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1",
      port,
      method,
      path: urlPath,
      headers: opts.headers,
      localAddress: opts.localAddress,
      agent: false,
    });
    req.on("error", reject);
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      let error: string | undefined;
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("error", (err) => {
        error = err.message;
      });
      res.on("close", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          complete: res.complete,
          error,
        }),
      );
    });
    void (async () => {
      if (opts.body) {
        for await (const piece of opts.body) {
          if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
        }
      }
      req.end();
    })();
  });
}

/** `total` bytes of random data in `piece`-sized parts, generated as they are consumed, hashed on the way. */
function* randomStream(total: number, piece: number, hash: ReturnType<typeof createHash>) {
  for (let sent = 0; sent < total; sent += piece) {
    const part = randomBytes(Math.min(piece, total - sent));
    hash.update(part);
    yield part;
  }
}

// ------------------------------------------------------------------ the tests

let t: TestContext;
beforeAll(async () => {
  t = await createTestContext({
    FILE_CHUNK_SIZE: "1024",
    FILE_MAX_BYTES: String(4 * MIB),
    FILE_PARALLELISM: "3",
  });
});
afterAll(async () => {
  await dropKeys(t);
  await t.close();
});

/** Runs `fn` with the real workers serving this context, then stops them. */
async function withWorkers<T>(ctx: TestContext, fn: () => Promise<T>): Promise<T> {
  const workers = ctx.startWorkers({ WORKER_QUEUES: "chunk-hashing" });
  try {
    return await fn();
  } finally {
    await workers.close();
  }
}

const jobOf = async (ctx: TestContext, statusUrl: string) =>
  (await (await ctx.app.request(statusUrl)).json()) as {
    state: string;
    progress: unknown;
    result: unknown;
    failedReason: string | null;
  };

const finishedJob = (ctx: TestContext, statusUrl: string) =>
  eventually(async () => {
    const job = await jobOf(ctx, statusUrl);
    return job.state === "completed" || job.state === "failed" ? job : undefined;
  }, 20_000);

describe("PUT and GET /v1/files/{name}: round trips", () => {
  const everyByte = Buffer.from(Array.from({ length: 256 * 41 + 3 }, (_, i) => (i * 7 + (i >> 8)) % 256));
  it.each([
    ["1 byte", Buffer.from([0x42]), 1],
    ["1000 bytes", randomBytes(1000), 1],
    ["1 KiB, exactly one chunk", randomBytes(1024), 1],
    ["one chunk plus one byte", randomBytes(1025), 2],
    ["ten chunks and a bit", randomBytes(10 * 1024 + 17), 11],
    ["every byte value, at every offset in a chunk", everyByte, 11],
  ])("stores and serves %s with its SHA-1", async (_label, bytes, chunks) => {
    const name = uniqueName();
    const res = await put(t, name, bytes, { "X-Checksum-SHA1": sha1(bytes) });
    expect(res.status).toBe(201);
    const body = (await res.json()) as Stored;
    expect(body).toMatchObject({ name, size: bytes.length, sha1: sha1(bytes), chunkSize: 1024, chunks });
    expect(Date.parse(body.expiresAt) - Date.now()).toBeGreaterThan(86_000_000);
    expect(body.verification).toMatchObject({ queue: "chunk-hashing", id: expect.any(String) });
    expect(body.verification.statusUrl).toBe(`/v1/jobs/chunk-hashing/${body.verification.id}`);

    const got = await t.app.request(path(name));
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("application/octet-stream");
    expect(got.headers.get("content-length")).toBe(String(bytes.length));
    expect(got.headers.get("etag")).toBe(`"${sha1(bytes)}"`);
    expect(got.headers.get("x-checksum-sha1")).toBe(sha1(bytes));
    const back = Buffer.from(await got.arrayBuffer());
    expect(sha1(back)).toBe(sha1(bytes));
    expect(back.equals(bytes)).toBe(true);
  });

  it("keeps only ids in the verification job's payload, never bytes", async () => {
    const name = uniqueName();
    const stored = await store(t, name, Buffer.from("the bytes of a brain scan"));
    const job = await t.deps.queues.get("chunk-hashing").getJob(stored.verification.id);
    expect(Object.keys(job?.data ?? {}).sort()).toEqual(["name", "owners", "tenant", "version"]);
    expect(JSON.stringify(job?.data)).not.toContain("brain scan");
    expect(t.logs.join("\n")).not.toContain("brain scan");
  });

  it("rejects an empty body with 422 EMPTY_BODY and stores nothing", async () => {
    const before = (await keysOf(t)).length;
    for (const body of [undefined, new Uint8Array(0)]) {
      const name = uniqueName();
      const res = await put(t, name, body);
      expect(res.status).toBe(422);
      expect(((await res.json()) as ErrorJson).error.code).toBe("EMPTY_BODY");
      expect((await t.app.request(path(name))).status).toBe(404);
    }
    expect((await keysOf(t)).length).toBe(before);
  });

  it("rejects a body whose SHA-1 differs from X-Checksum-SHA1 with 422, leaving no chunk behind", async () => {
    const before = await keysOf(t);
    const name = uniqueName();
    const bytes = randomBytes(5000);
    const res = await put(t, name, bytes, { "X-Checksum-SHA1": sha1(Buffer.from("something else")) });
    expect(res.status).toBe(422);
    const json = (await res.json()) as ErrorJson;
    expect(json.error.code).toBe("CHECKSUM_MISMATCH");
    expect(json.error.details).toMatchObject({ received: sha1(bytes) });
    expect((await t.app.request(path(name))).status).toBe(404);
    expect((await keysOf(t)).sort()).toEqual(before.sort());
    const malformed = await put(t, name, bytes, { "X-Checksum-SHA1": "not-hex" });
    expect(malformed.status).toBe(400);
    const legacy = await t.app.request(`/upload/${name}`, {
      method: "POST",
      body: bytes,
      headers: { "X-Checksum-SHA1": sha1(Buffer.from("other")) },
    });
    expect(legacy.status).toBe(422);
  });

  it("accepts an upper-case X-Checksum-SHA1", async () => {
    const bytes = randomBytes(100);
    const res = await put(t, uniqueName(), bytes, { "X-Checksum-SHA1": sha1(bytes).toUpperCase() });
    expect(res.status).toBe(201);
  });

  it("answers 404 with the error body for an unknown name", async () => {
    const res = await t.app.request(path("no-such-file"));
    expect(res.status).toBe(404);
    expect(((await res.json()) as ErrorJson).error.code).toBe("NOT_FOUND");
  });
});

describe("file names", () => {
  it.each([
    ["255 bytes", 201, "n".repeat(255)],
    ["127 two-byte characters (254 bytes)", 201, "é".repeat(127)],
    ["with spaces, colons and globs", 201, "a b:c*?[x].bin"],
    ["256 bytes", 400, "n".repeat(256)],
    ["86 three-byte characters (258 bytes)", 400, "€".repeat(86)],
    ["an encoded slash", 400, "a/b"],
    ["a control character", 400, "a\u0001b"],
    ["a DEL", 400, "a\u007fb"],
  ])("%s → %i", async (_label, status, name) => {
    const res = await put(t, name, Buffer.from("x"));
    expect(res.status).toBe(status);
    if (status === 201) {
      const got = await t.app.request(path(name));
      expect(await got.text()).toBe("x");
      expect(
        ((await (await t.app.request("/v1/files")).json()) as { items: { name: string }[] }).items,
      ).toEqual(expect.arrayContaining([expect.objectContaining({ name })]));
    } else {
      expect(((await res.json()) as ErrorJson).error.code).toBe("VALIDATION_FAILED");
      expect((await t.app.request(path(name))).status).toBe(400);
    }
  });
});

describe("413 past FILE_MAX_BYTES", () => {
  it("refuses a body over the limit and keeps nothing", async () => {
    const before = await keysOf(t);
    const name = uniqueName();
    const res = await put(t, name, randomBytes(4 * MIB + 1));
    expect(res.status).toBe(413);
    expect(((await res.json()) as ErrorJson).error.code).toBe("PAYLOAD_TOO_LARGE");
    expect((await t.app.request(path(name))).status).toBe(404);
    expect((await keysOf(t)).sort()).toEqual(before.sort());
    // Exactly the limit is fine.
    expect((await put(t, name, randomBytes(4 * MIB))).status).toBe(201);
  });

  it("refuses a chunked body that grows past the limit over real HTTP, and keeps nothing", async () => {
    const before = await keysOf(t);
    const served = await serveApp(t.app);
    try {
      const name = uniqueName();
      const res = await request(served.port, "PUT", path(name), {
        headers: { "transfer-encoding": "chunked" },
        body: randomStream(4 * MIB + 64 * KIB, 64 * KIB, createHash("sha1")),
      });
      expect(res.status).toBe(413);
      expect((JSON.parse(res.body.toString()) as ErrorJson).error.code).toBe("PAYLOAD_TOO_LARGE");
      expect((await t.app.request(path(name))).status).toBe(404);
      expect((await keysOf(t)).sort()).toEqual(before.sort());
    } finally {
      await served.close();
    }
  });

  it("refuses a declared Content-Length over the limit before reading the body", async () => {
    const served = await serveApp(t.app);
    try {
      const res = await request(served.port, "PUT", path(uniqueName()), {
        headers: { "content-length": 4 * MIB + 1 },
      });
      expect(res.status).toBe(413);
    } finally {
      await served.close();
    }
  });
});

describe("Range, HEAD, DELETE, list", () => {
  const bytes = randomBytes(5 * 1024 + 100);
  const name = uniqueName("ranged");
  beforeAll(async () => {
    await store(t, name, bytes);
  });

  it.each([
    ["bytes=0-0", 0, 0],
    ["bytes=1000-1100", 1000, 1100],
    ["bytes=1024-2047", 1024, 2047],
    ["bytes=-10", bytes.length - 10, bytes.length - 1],
    ["bytes=5000-", 5000, bytes.length - 1],
    ["bytes=3000-999999", 3000, bytes.length - 1],
  ])("answers %s with 206 and exactly those bytes", async (range, start, end) => {
    const res = await t.app.request(path(name), { headers: { Range: range } });
    expect(res.status).toBe(206);
    expect(res.headers.get("content-range")).toBe(`bytes ${start}-${end}/${bytes.length}`);
    expect(res.headers.get("content-length")).toBe(String(end - start + 1));
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(start, end + 1))).toBe(true);
  });

  it("answers an unsatisfiable range with 416 and ignores a multi-range or stale If-Range", async () => {
    const res = await t.app.request(path(name), { headers: { Range: `bytes=${bytes.length}-` } });
    expect(res.status).toBe(416);
    expect(((await res.json()) as ErrorJson).error.code).toBe("RANGE_NOT_SATISFIABLE");
    const multi = await t.app.request(path(name), { headers: { Range: "bytes=0-1,5-6" } });
    expect(multi.status).toBe(200);
    expect((await multi.arrayBuffer()).byteLength).toBe(bytes.length);
    const stale = await t.app.request(path(name), { headers: { Range: "bytes=0-1", "If-Range": '"0000"' } });
    expect(stale.status).toBe(200);
    await stale.arrayBuffer();
  });

  it("reads only the chunks a range needs", async () => {
    const own = uniqueName("ranged-damaged");
    const stored = await store(t, own, bytes);
    const s = storeOf(t);
    const manifest = await s.head(own);
    // Chunk 4 is damaged; a range within chunks 0-1 never reads it.
    await t.deps.fileStore.set(s.keys.chunk(manifest?.version ?? "", 4), Buffer.alloc(1024, 1), "KEEPTTL");
    const res = await t.app.request(path(own), { headers: { Range: "bytes=10-2000" } });
    expect(res.status).toBe(206);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(10, 2001))).toBe(true);
    expect((await s.head(own))?.state).toBe("pending");
    // A range that needs chunk 4 is refused before its first byte.
    const bad = await t.app.request(path(own), { headers: { Range: "bytes=4096-4100" } });
    expect(bad.status).toBe(500);
    expect(((await bad.json()) as ErrorJson).error.code).toBe("FILE_CORRUPTED");
    expect(stored.chunks).toBe(6);
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const res = await t.app.request(path(name), { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBe(String(bytes.length));
    expect(res.headers.get("etag")).toBe(`"${sha1(bytes)}"`);
    expect(res.headers.get("x-checksum-sha1")).toBe(sha1(bytes));
    expect((await res.arrayBuffer()).byteLength).toBe(0);
    expect((await t.app.request(path("nothing-here"), { method: "HEAD" })).status).toBe(404);
  });

  it("lists files with size, sha1, chunks, verified and expiresAt", async () => {
    const res = await t.app.request("/v1/files");
    expect(res.status).toBe(200);
    const { items } = (await res.json()) as { items: Record<string, unknown>[] };
    expect(items).toEqual(
      expect.arrayContaining([
        {
          name,
          size: bytes.length,
          sha1: sha1(bytes),
          chunks: 6,
          verified: false,
          state: "pending",
          expiresAt: expect.any(String),
        },
      ]),
    );
  });

  it("deletes a file and its chunks with 204; 404 after", async () => {
    const own = uniqueName("deleted");
    await store(t, own, randomBytes(3000));
    const version = (await storeOf(t).head(own))?.version ?? "";
    expect(await chunkKeysOf(t, version)).toHaveLength(3);
    const res = await t.app.request(path(own), { method: "DELETE" });
    expect(res.status).toBe(204);
    expect((await t.app.request(path(own))).status).toBe(404);
    expect(await chunkKeysOf(t, version)).toHaveLength(0);
    expect((await t.app.request(path(own), { method: "DELETE" })).status).toBe(404);
  });
});

describe("files per account (tenancy)", () => {
  it("keeps each account's names its own: read, HEAD, list, overwrite, delete, verify and its job", async () => {
    const [alice, bob, carol] = [
      await t.account("client"),
      await t.account("client"),
      await t.account("quant"),
    ];
    const name = uniqueName("shared");
    const as = { alice: alice.headers, bob: bob.headers, anonymous: {} as Record<string, string> };
    const stored: Record<string, Stored> = {};
    for (const [who, headers] of Object.entries(as)) {
      const res = await put(t, name, Buffer.from(`${who}'s bytes`), headers);
      expect(res.status).toBe(201);
      stored[who] = (await res.json()) as Stored;
    }
    const read = async (headers: Record<string, string>) => {
      const res = await t.app.request(path(name), { headers });
      return { status: res.status, text: res.status === 200 ? await res.text() : "" };
    };
    for (const [who, headers] of Object.entries(as)) {
      expect(await read(headers)).toEqual({ status: 200, text: `${who}'s bytes` });
      const listed = (await (await t.app.request("/v1/files", { headers })).json()) as {
        items: { name: string; sha1: string }[];
      };
      expect(listed.items.filter((f) => f.name === name)).toEqual([
        expect.objectContaining({ sha1: sha1(Buffer.from(`${who}'s bytes`)) }),
      ]);
    }
    // Carol has no file of that name: 404 everywhere, as for a name no one has.
    expect((await read(carol.headers)).status).toBe(404);
    expect((await t.app.request(path(name), { method: "HEAD", headers: carol.headers })).status).toBe(404);
    expect((await t.app.request(path(name), { method: "DELETE", headers: carol.headers })).status).toBe(404);
    expect(
      (await t.app.request(`${path(name)}/verify`, { method: "POST", headers: carol.headers })).status,
    ).toBe(404);
    const carolList = (await (await t.app.request("/v1/files", { headers: carol.headers })).json()) as {
      items: unknown[];
    };
    expect(carolList.items).toEqual([]);

    // Bob overwrites, then deletes, his: Alice's and the anonymous tenant's stay.
    expect((await put(t, name, Buffer.from("bob again"), bob.headers)).status).toBe(201);
    expect((await t.app.request(path(name), { method: "DELETE", headers: bob.headers })).status).toBe(204);
    expect((await read(bob.headers)).status).toBe(404);
    expect(await read(alice.headers)).toEqual({ status: 200, text: "alice's bytes" });
    expect(await read({})).toEqual({ status: 200, text: "anonymous's bytes" });

    // The verification job of Alice's upload is hers.
    const statusUrl = stored.alice?.verification.statusUrl as string;
    expect((await t.app.request(statusUrl, { headers: alice.headers })).status).toBe(200);
    for (const headers of [bob.headers, {}])
      expect((await t.app.request(statusUrl, { headers })).status).toBe(404);
    // Run, it finds Alice's file (not another tenant's, not none: "superseded") and verifies it.
    const done = await withWorkers(t, () =>
      eventually(async () => {
        const res = await t.app.request(statusUrl, { headers: alice.headers });
        const job = (await res.json()) as { state: string; result: { outcome?: string } | null };
        return job.state === "completed" || job.state === "failed" ? job : undefined;
      }, 20_000),
    );
    expect(done).toMatchObject({ state: "completed", result: { outcome: "verified" } });
  });

  it("verifies the anonymous tenant's file for a job enqueued before jobs named a tenant", async () => {
    const alice = await t.account("client");
    const name = uniqueName("pre-tenancy");
    await store(t, name, Buffer.from("anonymous's bytes"));
    expect((await put(t, name, Buffer.from("alice's bytes"), alice.headers)).status).toBe(201);
    const anonymous = storeOf(t);
    const own = t.deps.services.files.storeFor(alice.account.id);
    const version = (await anonymous.head(name))?.version as string;
    // As an older deploy enqueued it: no tenant, no owners.
    const job = await enqueue(t.deps.queues.get("chunk-hashing"), chunkHashingQueue, "files.verify", {
      name,
      version,
    });
    const done = await withWorkers(t, () => finishedJob(t, `/v1/jobs/chunk-hashing/${job.id}`));
    expect(done).toMatchObject({ state: "completed", result: { outcome: "verified", version } });
    expect((await anonymous.head(name))?.state).toBe("verified");
    expect((await own.head(name))?.state).not.toBe("corrupted");
  });
});

describe("verification on chunk-hashing", () => {
  it("reads every chunk back, reports chunks done, and marks the file verified", async () => {
    const name = uniqueName("verified");
    const bytes = randomBytes(7 * 1024 + 5);
    const stored = await store(t, name, bytes);
    const job = await withWorkers(t, () => finishedJob(t, stored.verification.statusUrl));
    expect(job.state).toBe("completed");
    expect(job.progress).toEqual({ chunksDone: 8, chunks: 8 });
    expect(job.result).toMatchObject({
      outcome: "verified",
      chunks: 8,
      size: bytes.length,
      sha1: sha1(bytes),
    });
    expect((await storeOf(t).head(name))?.state).toBe("verified");
    const { items } = (await (await t.app.request("/v1/files")).json()) as {
      items: { name: string; verified: boolean }[];
    };
    expect(items.find((i) => i.name === name)?.verified).toBe(true);
    const got = await t.app.request(path(name));
    expect(got.headers.get("x-file-state")).toBe("verified");
    expect(sha1(Buffer.from(await got.arrayBuffer()))).toBe(sha1(bytes));
  });

  it("POST /v1/files/{name}/verify enqueues a fresh verification (202, or 200 with Prefer: wait)", async () => {
    const name = uniqueName("reverify");
    await store(t, name, randomBytes(2048));
    const accepted = await t.app.request(`${path(name)}/verify`, { method: "POST" });
    expect(accepted.status).toBe(202);
    const { job } = (await accepted.json()) as { job: { queue: string; statusUrl: string } };
    expect(job.queue).toBe("chunk-hashing");
    const waited = await withWorkers(t, async () =>
      t.app.request(`${path(name)}/verify`, { method: "POST", headers: { Prefer: "wait=10" } }),
    );
    expect(waited.status).toBe(200);
    expect(await waited.json()).toMatchObject({ state: "completed", result: { outcome: "verified" } });
    expect((await t.app.request(`${path("unknown-file")}/verify`, { method: "POST" })).status).toBe(404);
  });

  it.each([
    ["a chunk whose bytes were overwritten", "overwrite", /chunk 3 of 6 fails its SHA-1 check/],
    ["a missing chunk", "delete", /chunk 3 of 6 is missing/],
  ])("catches %s: the job fails and the file is no longer served", async (_label, damage, reason) => {
    const name = uniqueName("damaged");
    const bytes = randomBytes(6 * 1024);
    const stored = await store(t, name, bytes);
    const s = storeOf(t);
    const key = s.keys.chunk((await s.head(name))?.version ?? "", 3);
    if (damage === "overwrite") {
      const flipped = Buffer.from(bytes.subarray(3 * 1024, 4 * 1024));
      flipped[100] = (flipped[100] ?? 0) ^ 0xff;
      await t.deps.fileStore.set(key, flipped, "KEEPTTL");
    } else {
      await t.deps.fileStore.del(key);
    }
    const job = await withWorkers(t, () => finishedJob(t, stored.verification.statusUrl));
    expect(job.state).toBe("failed");
    expect(job.failedReason).toMatch(reason);
    const manifest = await s.head(name);
    expect(manifest?.state).toBe("corrupted");
    expect(manifest?.stateReason).toMatch(reason);
    // Unrecoverable: one attempt, no retry.
    const failed = await t.deps.queues.get("chunk-hashing").getJob(stored.verification.id);
    expect(failed?.attemptsMade).toBe(1);
    const res = await t.app.request(path(name));
    expect(res.status).toBe(500);
    const json = (await res.json()) as ErrorJson;
    expect(json.error.code).toBe("FILE_CORRUPTED");
    expect(json.error.message).toMatch(reason);
    expect((await t.app.request(`/download/${name}`)).status).toBe(500);
  });

  it("leaves a file alone when the version it was asked to check has been replaced", async () => {
    const name = uniqueName("superseded");
    const first = await store(t, name, randomBytes(3000));
    await store(t, name, randomBytes(3000));
    const job = await withWorkers(t, () => finishedJob(t, first.verification.statusUrl));
    expect(job).toMatchObject({ state: "completed", result: { outcome: "superseded" } });
  });
});

describe("damage found by a download", () => {
  let served: ServedApp;
  beforeAll(async () => {
    served = await serveApp(t.app);
  });
  afterAll(() => served.close());

  it.each([
    ["overwritten", "overwrite"],
    ["missing", "delete"],
  ])(
    "an %s first chunk: 500 FILE_CORRUPTED before the first byte, and the file is flagged",
    async (_l, damage) => {
      const name = uniqueName("bad-first");
      await store(t, name, randomBytes(4000));
      const s = storeOf(t);
      const key = s.keys.chunk((await s.head(name))?.version ?? "", 0);
      if (damage === "overwrite") await t.deps.fileStore.set(key, randomBytes(1024), "KEEPTTL");
      else await t.deps.fileStore.del(key);
      const res = await request(served.port, "GET", path(name));
      expect(res.status).toBe(500);
      expect(res.headers["content-type"]).toMatch(/application\/json/);
      const json = JSON.parse(res.body.toString()) as ErrorJson;
      expect(json.error.code).toBe("FILE_CORRUPTED");
      expect(json.error.requestId).toBe(res.headers["x-request-id"]);
      expect((await s.head(name))?.state).toBe("corrupted");
    },
  );

  it.each([
    ["overwritten", "overwrite"],
    ["missing", "delete"],
  ])(
    "an %s middle chunk cuts the connection: a short read of correct bytes, never wrong ones",
    async (_l, damage) => {
      // Big enough that the damaged chunk is read after the headers and the first bytes have gone out.
      const bytes = randomBytes(400 * 1024);
      const damaged = async () => {
        const name = uniqueName("bad-middle");
        await store(t, name, bytes);
        const s = storeOf(t);
        const key = s.keys.chunk((await s.head(name))?.version ?? "", 300);
        if (damage === "overwrite") {
          const wrong = Buffer.from(bytes.subarray(300 * 1024, 301 * 1024));
          wrong[0] = (wrong[0] ?? 0) ^ 1;
          await t.deps.fileStore.set(key, wrong, "KEEPTTL");
        } else {
          await t.deps.fileStore.del(key);
        }
        return name;
      };

      const name = await damaged();
      const res = await request(served.port, "GET", path(name));
      expect(res.status).toBe(200);
      expect(res.headers["content-length"]).toBe(String(bytes.length));
      expect(res.complete).toBe(false);
      expect(res.body.length).toBeLessThan(bytes.length);
      expect(res.body.length).toBeLessThanOrEqual(300 * 1024);
      expect(res.body.equals(bytes.subarray(0, res.body.length))).toBe(true);
      expect(t.logs.some((l) => l.includes("download cut short") && l.includes(name))).toBe(true);
      // Flagged: the next request is refused before its first byte.
      expect((await storeOf(t).head(name))?.state).toBe("corrupted");
      expect((await fetch(`http://127.0.0.1:${served.port}${path(name)}`)).status).toBe(500);

      // fetch() sees the cut as an error, never as a whole body.
      const other = await damaged();
      const cut = await fetch(`http://127.0.0.1:${served.port}${path(other)}`);
      expect(cut.status).toBe(200);
      await expect(cut.arrayBuffer()).rejects.toThrow();
    },
  );
});

describe("whole-file SHA-1", () => {
  it("is checked before the last chunk goes out: a manifest whose whole SHA-1 disagrees cuts the download", async () => {
    const served = await serveApp(t.app);
    try {
      const name = uniqueName("whole");
      const bytes = randomBytes(3 * 1024);
      await store(t, name, bytes);
      const s = storeOf(t);
      // Every chunk still matches its own SHA-1; only the whole-file one is wrong.
      await t.deps.fileStore.hset(s.keys.manifest(name), "sha1", sha1(Buffer.from("not these bytes")));
      const res = await request(served.port, "GET", path(name));
      expect(res.status).toBe(200);
      expect(res.complete).toBe(false);
      expect(res.body.length).toBeLessThanOrEqual(2 * 1024);
      expect(res.body.equals(bytes.subarray(0, res.body.length))).toBe(true);
      expect((await s.head(name))?.stateReason).toMatch(/whole-file SHA-1/);
    } finally {
      await served.close();
    }
  });
});

describe("compatibility routes", () => {
  it("POST /upload/{fileName} answers 200 {ok:true}; GET /download/{fileName} serves the bytes", async () => {
    const name = uniqueName("legacy");
    const bytes = randomBytes(3333);
    const res = await t.app.request(`/upload/${name}`, { method: "POST", body: bytes });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
    const got = await t.app.request(`/download/${name}`);
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("application/octet-stream");
    expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
    // The same store as /v1/files.
    expect(sha1(Buffer.from(await (await t.app.request(path(name))).arrayBuffer()))).toBe(sha1(bytes));
  });

  it("answers 422 for an empty body and 404 for an unknown name", async () => {
    const empty = await t.app.request(`/upload/${uniqueName()}`, { method: "POST" });
    expect(empty.status).toBe(422);
    expect(((await empty.json()) as ErrorJson).error.code).toBe("EMPTY_BODY");
    expect((await t.app.request("/download/never-stored")).status).toBe(404);
  });

  it("takes bodies over the JSON body limit (BODY_LIMIT_BYTES) on both upload routes", async () => {
    const bytes = randomBytes(2 * MIB);
    expect((await t.app.request(`/upload/${uniqueName()}`, { method: "POST", body: bytes })).status).toBe(
      200,
    );
    expect((await put(t, uniqueName(), bytes)).status).toBe(201);
  });
});

describe("over real HTTP", () => {
  let served: ServedApp;
  beforeAll(async () => {
    served = await serveApp(t.app);
  });
  afterAll(() => served.close());

  it("rejects an empty body with 422, with Content-Length: 0 and as an empty chunked stream", async () => {
    const a = await request(served.port, "PUT", path(uniqueName()), { headers: { "content-length": 0 } });
    expect(a.status).toBe(422);
    const b = await request(served.port, "PUT", path(uniqueName()), {
      headers: { "transfer-encoding": "chunked" },
      body: [],
    });
    expect(b.status).toBe(422);
    expect((JSON.parse(b.body.toString()) as ErrorJson).error.code).toBe("EMPTY_BODY");
    const c = await request(served.port, "POST", `/upload/${uniqueName()}`, {
      headers: { "content-length": 0 },
    });
    expect(c.status).toBe(422);
  });

  it("round-trips a chunked upload and the compatibility routes", async () => {
    const name = uniqueName("http");
    const hash = createHash("sha1");
    const res = await request(served.port, "PUT", path(name), {
      headers: { "transfer-encoding": "chunked" },
      body: randomStream(50_000, 777, hash),
    });
    expect(res.status).toBe(201);
    const sha = hash.digest("hex");
    expect((JSON.parse(res.body.toString()) as Stored).sha1).toBe(sha);
    const got = await request(served.port, "GET", `/download/${encodeURIComponent(name)}`);
    expect(got.status).toBe(200);
    expect(got.complete).toBe(true);
    expect(sha1(got.body)).toBe(sha);
    const head = await request(served.port, "HEAD", path(name));
    expect(head.headers["content-length"]).toBe("50000");
    expect(head.body.length).toBe(0);
  });

  it("answers a Range across chunks with 206 and exactly those bytes, X-Request-Id included", async () => {
    const name = uniqueName("range-http");
    const bytes = randomBytes(10_000);
    await store(t, name, bytes);
    const res = await request(served.port, "GET", path(name), { headers: { Range: "bytes=1000-5000" } });
    expect(res.status).toBe(206);
    expect(res.complete).toBe(true);
    expect(res.headers["content-range"]).toBe("bytes 1000-5000/10000");
    expect(res.headers["x-request-id"]).toMatch(/^req_/);
    expect(res.body.equals(bytes.subarray(1000, 5001))).toBe(true);
  });

  it("gives every key in the file store a TTL, leases of running downloads included", async () => {
    const name = uniqueName("ttl");
    await store(t, name, randomBytes(10_000));
    // A download held open (its stream not read to the end) holds a read lease.
    const res = await t.app.request(path(name));
    const reader = res.body?.getReader();
    await reader?.read();
    const keys = await keysOf(t);
    expect(keys.some((k) => k.includes(":files:t:anonymous:r:"))).toBe(true);
    expect(keys.some((k) => k.includes(":files:c:"))).toBe(true);
    expect(keys.some((k) => k.includes(":files:t:anonymous:m:"))).toBe(true);
    const pipeline = t.deps.fileStore.pipeline();
    for (const key of keys) pipeline.pttl(key);
    const ttls = ((await pipeline.exec()) ?? []).map(([, v]) => v as number);
    for (const [i, ttl] of ttls.entries()) {
      expect(ttl, keys[i]).toBeGreaterThan(0);
      expect(ttl, keys[i]).toBeLessThanOrEqual(86_400_000);
    }
    await reader?.cancel();
  });
});

describe("overwrite, concurrency and aborts (64 KiB chunks)", () => {
  let big: TestContext;
  let served: ServedApp;
  beforeAll(async () => {
    // At debug: a client going away is logged there.
    big = await createTestContext({ FILE_CHUNK_SIZE: String(64 * KIB), LOG_LEVEL: "debug" });
    served = await serveApp(big.app);
  });
  afterAll(async () => {
    await served.close();
    await dropKeys(big);
    await big.close();
  });

  it("lets a download that began before an overwrite finish with the old bytes, then drops them", async () => {
    const name = uniqueName("overwritten");
    const old = randomBytes(2 * MIB + 123);
    const fresh = randomBytes(MIB);
    await store(big, name, old);
    const oldVersion = (await storeOf(big).head(name))?.version ?? "";

    const res = await big.app.request(path(name));
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    if (!reader) throw new Error("no body");
    const parts: Uint8Array[] = [];
    const firstRead = await reader.read();
    if (firstRead.value) parts.push(firstRead.value);

    // Overwritten (and then deleted) while the first download is still reading.
    await store(big, name, fresh);
    expect(Buffer.from(await (await big.app.request(path(name))).arrayBuffer()).equals(fresh)).toBe(true);
    expect((await chunkKeysOf(big, oldVersion)).length).toBeGreaterThan(0);
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);

    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
    }
    expect(Buffer.concat(parts).equals(old)).toBe(true);
    // The last reader of the old version deleted its chunks.
    await eventually(async () => ((await chunkKeysOf(big, oldVersion)).length === 0 ? true : undefined));
  });

  it("does the same over real HTTP with a reader that pauses", async () => {
    const name = uniqueName("overwritten-http");
    const old = randomBytes(24 * MIB);
    await store(big, name, old);
    const oldVersion = (await storeOf(big).head(name))?.version ?? "";
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port: served.port, path: path(name), agent: false },
        (res) => {
          const parts: Buffer[] = [];
          let paused = false;
          res.on("data", (d: Buffer) => {
            parts.push(d);
            if (!paused) {
              paused = true;
              res.pause();
              void store(big, name, randomBytes(MIB)).then(() => res.resume(), reject);
            }
          });
          res.on("end", () => resolve(Buffer.concat(parts)));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
    });
    expect(body.length).toBe(old.length);
    expect(body.equals(old)).toBe(true);
    await eventually(async () => ((await chunkKeysOf(big, oldVersion)).length === 0 ? true : undefined));
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  });

  it("releases the read lease of a download whose client goes away, so a replaced version goes too", async () => {
    const name = uniqueName("abandoned-download");
    await store(big, name, randomBytes(8 * MIB));
    const s = storeOf(big);
    const oldVersion = (await s.head(name))?.version ?? "";
    await new Promise<void>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port: served.port, path: path(name), agent: false },
        (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on("error", () => {});
      req.on("close", () => resolve());
      setTimeout(() => reject(new Error("no data")), 10_000);
    });
    await eventually(async () =>
      (await big.deps.fileStore.zcard(s.keys.leases(name))) === 0 ? true : undefined,
    );
    // No reader left: an overwrite deletes the old version at once.
    await store(big, name, randomBytes(KIB));
    expect(await chunkKeysOf(big, oldVersion)).toEqual([]);
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  });

  it("logs a client that goes away mid-download as no error of the server's", async () => {
    const name = uniqueName("walked-away");
    await store(big, name, randomBytes(8 * MIB));
    const requestId = `req-walked-away-${name}`;
    await new Promise<void>((resolve) => {
      const req = http.get(
        {
          host: "127.0.0.1",
          port: served.port,
          path: path(name),
          agent: false,
          headers: { "x-request-id": requestId },
        },
        (res) => res.once("data", () => req.destroy()),
      );
      req.on("error", () => {});
      req.on("close", () => resolve());
    });
    const ofRequest = () =>
      big.logs
        .map((l) => JSON.parse(l) as { level: number; msg: string; requestId?: string })
        .filter((l) => l.requestId === requestId);
    // Logged once, at debug, whichever side noticed first: the route's close listener or a write.
    await eventually(async () =>
      ofRequest().some((l) => l.msg === "download stopped: the client went away" && l.level === 20)
        ? true
        : undefined,
    );
    expect(ofRequest().filter((l) => l.level >= 50)).toEqual([]);
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  });

  it("keeps a chunk's pooled buffer from other downloads until a stalled socket has sent it", async () => {
    // A chunk size of its own: the pool's buffers fit only this context's chunks, so a buffer
    // given back too early (while the socket still holds it) is the very next one reused.
    const own = await createTestContext({ FILE_CHUNK_SIZE: "100003" });
    const ownServed = await serveApp(own.app);
    try {
      const a = randomBytes(24 * MIB);
      const b = randomBytes(MIB);
      await store(own, "stalled", a);
      await store(own, "other", b);
      const body = await new Promise<Buffer>((resolve, reject) => {
        const req = http.get(
          { host: "127.0.0.1", port: ownServed.port, path: path("stalled"), agent: false },
          (res) => {
            // Not read until another download has run: the server's writes back up meanwhile.
            res.pause();
            const parts: Buffer[] = [];
            res.on("data", (d: Buffer) => parts.push(d));
            res.on("end", () => resolve(Buffer.concat(parts)));
            res.on("error", reject);
            // Long enough for the server to fill the socket's buffers and wait on a write.
            void new Promise((r) => setTimeout(r, 500))
              .then(() => request(ownServed.port, "GET", path("other")))
              .then((other) => {
                expect(sha1(other.body)).toBe(sha1(b));
                res.resume();
              }, reject);
          },
        );
        req.on("error", reject);
      });
      expect(body.length).toBe(a.length);
      expect(sha1(body)).toBe(sha1(a));
    } finally {
      await ownServed.close();
      await dropKeys(own);
      await own.close();
    }
  });

  it("releases the leases of pipelined downloads whose connection goes away", async () => {
    // The second response waits behind the first on the connection; when the connection dies,
    // Node never closes that response, only the connection.
    const name = uniqueName("pipelined");
    await store(big, name, randomBytes(8 * MIB));
    const s = storeOf(big);
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(served.port, "127.0.0.1", () => {
        const get = `GET ${path(name)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
        socket.write(get + get);
      });
      socket.once("data", () => {
        socket.destroy();
        resolve();
      });
      socket.on("error", reject);
    });
    await eventually(async () =>
      (await big.deps.fileStore.zcard(s.keys.leases(name))) === 0 ? true : undefined,
    );
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  });

  it("ends two simultaneous uploads of one name with one whole file, never a mixture", async () => {
    const name = uniqueName("race");
    const a = randomBytes(MIB + 7);
    const b = randomBytes(MIB + 7);
    const [ra, rb] = await Promise.all([put(big, name, a), put(big, name, b)]);
    expect([ra.status, rb.status]).toEqual([201, 201]);
    const got = Buffer.from(await (await big.app.request(path(name))).arrayBuffer());
    expect(got.equals(a) || got.equals(b)).toBe(true);
    const version = (await storeOf(big).head(name))?.version ?? "";
    const chunkKeys = (await keysOf(big)).filter((k) => k.includes(":files:c:"));
    // Only the winner's chunks are left (other tests' files in this context have been deleted).
    expect(chunkKeys.filter((k) => !k.includes(`:c:${version}:`))).toEqual([]);
    expect(chunkKeys).toHaveLength(17);
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  });

  it("leaves no file and no chunk behind when the client disconnects mid-upload", async () => {
    const name = uniqueName("aborted");
    const req = openChunkedPut(served.port, name);
    for (let i = 0; i < 32; i++) req.write(randomBytes(32 * KIB));
    // Some chunks have reached the store…
    await eventually(async () =>
      (await keysOf(big)).some((k) => k.includes(":files:c:")) ? true : undefined,
    );
    // …when the client goes away.
    req.destroy();
    await eventually(async () => ((await keysOf(big)).length === 0 ? true : undefined));
    expect((await big.app.request(path(name))).status).toBe(404);
    expect(big.logs.some((l) => l.includes("upload abandoned"))).toBe(true);
  });

  it("round-trips 256 MB over real HTTP, streamed both ways, SHA-1 equal", async () => {
    const name = uniqueName("large");
    const size = 256 * 1000 * 1000;
    const sent = createHash("sha1");
    const up = await request(served.port, "PUT", path(name), {
      headers: { "content-length": size },
      body: randomStream(size, MIB, sent),
    });
    expect(up.status, up.body.toString()).toBe(201);
    const sha = sent.digest("hex");
    expect(JSON.parse(up.body.toString())).toMatchObject({
      size,
      sha1: sha,
      chunks: Math.ceil(size / (64 * KIB)),
    });
    const received = createHash("sha1");
    let length = 0;
    const headers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: served.port, path: path(name), agent: false }, (res) => {
          res.on("data", (d: Buffer) => {
            received.update(d);
            length += d.length;
          });
          res.on("end", () => resolve(res.headers));
          res.on("error", reject);
        })
        .on("error", reject);
    });
    expect(length).toBe(size);
    expect(headers["x-checksum-sha1"]).toBe(sha);
    expect(received.digest("hex")).toBe(sha);
    expect((await big.app.request(path(name), { method: "DELETE" })).status).toBe(204);
  }, 180_000);
});

// ------------------------------------------------------------------ memory and limits

interface StalledClient {
  status: number;
  /** The status line and headers, as received. */
  head: string;
  socket: net.Socket;
  /** Settles when the connection closes (the server ending it, say). */
  closed: Promise<void>;
}

/**
 * A GET whose client reads the answer's first bytes and then nothing more: its socket is paused,
 * so once the kernel's buffers are full the server's writes wait. `localAddress` (any 127.x.y.z)
 * makes it a client of its own.
 */
function stalledGet(port: number, urlPath: string, localAddress = "127.0.0.1"): Promise<StalledClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", localAddress });
    const closed = new Promise<void>((done) => socket.once("close", () => done()));
    socket.on("error", () => {});
    socket.once("connect", () => socket.write(`GET ${urlPath} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
    socket.once("data", (first: Buffer) => {
      socket.pause();
      const head = first.toString("latin1").split("\r\n\r\n")[0] ?? "";
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, socket, closed });
    });
    void closed.then(() => reject(new Error("closed before any answer")));
  });
}

/** Big enough that a client that stops reading stalls the server long before the end (kernel buffers take ~10 MB). */
const STALL_FILE_BYTES = 32 * MIB;

describe("memory budget and per-client limit (64 KiB chunks, parallelism 2)", () => {
  const chunk = 64 * KIB;
  let lim: TestContext;
  let served: ServedApp;
  const name = uniqueName("stall");
  let bytes: Buffer;
  const memory = () => lim.deps.services.files.memory;
  const leasesOf = (file: string) => lim.deps.fileStore.zcard(storeOf(lim).keys.leases(file));
  beforeAll(async () => {
    lim = await createTestContext({
      FILE_CHUNK_SIZE: String(chunk),
      FILE_PARALLELISM: "2",
      // Eight chunk buffers: a transfer holds one to three.
      FILE_MEMORY_BUDGET_BYTES: String(8 * chunk),
      FILE_MAX_TRANSFERS_PER_CLIENT: "2",
      FILE_IDLE_TIMEOUT_MS: "60000",
    });
    served = await serveApp(lim.app);
    bytes = randomBytes(STALL_FILE_BYTES);
    await store(lim, name, bytes);
  });
  afterAll(async () => {
    await served.close();
    await dropKeys(lim);
    await lim.close();
  });

  it("keeps the chunk buffers of stalled downloads within FILE_MEMORY_BUDGET_BYTES: the excess get 503, and all comes back when they leave", async () => {
    expect(memory().limitBytes).toBe(8 * chunk);
    // Twelve clients of their own (the per-client limit is not what stops them), none reading.
    const clients = await Promise.all(
      Array.from({ length: 12 }, (_, i) => stalledGet(served.port, path(name), `127.0.0.${10 + i}`)),
    );
    try {
      const admitted = clients.filter((c) => c.status === 200);
      const refused = clients.filter((c) => c.status === 503);
      expect(admitted.length + refused.length).toBe(clients.length);
      expect(admitted.length).toBeGreaterThan(0);
      expect(refused.length).toBeGreaterThan(0);
      for (const c of refused) {
        expect(c.head).toMatch(/\r\nretry-after: \d+/i);
        expect(c.head).toMatch(/application\/json/);
      }
      // Each download under way holds at least one buffer, and never did they all hold more than the budget.
      expect(memory().inUseBytes).toBeGreaterThanOrEqual(admitted.length * chunk);
      expect(memory().inUseBytes).toBeLessThanOrEqual(memory().limitBytes);
      expect(memory().peakBytes).toBeLessThanOrEqual(memory().limitBytes);
      expect(await leasesOf(name)).toBe(admitted.length);
    } finally {
      for (const c of clients) c.socket.destroy();
    }
    await eventually(async () => (memory().inUseBytes === 0 ? true : undefined));
    await eventually(async () => ((await leasesOf(name)) === 0 ? true : undefined));
    // Once they have gone, a download runs again, whole.
    const again = await request(served.port, "GET", path(name));
    expect(again.status).toBe(200);
    expect(again.complete).toBe(true);
    expect(sha1(again.body)).toBe(sha1(bytes));
    expect(memory().inUseBytes).toBe(0);
    expect(memory().peakBytes).toBeLessThanOrEqual(memory().limitBytes);
  });

  it("answers 429 with Retry-After past FILE_MAX_TRANSFERS_PER_CLIENT transfers of one address, uploads and downloads alike", async () => {
    const busy = "127.0.0.2";
    const both = await Promise.all([
      stalledGet(served.port, path(name), busy),
      stalledGet(served.port, path(name), busy),
    ]);
    try {
      expect(both.map((c) => c.status)).toEqual([200, 200]);
      const third = await request(served.port, "GET", path(name), { localAddress: busy });
      expect(third.status).toBe(429);
      expect(third.headers["retry-after"]).toMatch(/^\d+$/);
      expect((JSON.parse(third.body.toString()) as ErrorJson).error.code).toBe("RATE_LIMITED");
      const upload = await request(served.port, "PUT", path(uniqueName()), {
        localAddress: busy,
        body: [randomBytes(1000)],
      });
      expect(upload.status).toBe(429);
      // A HEAD moves no chunk: not a transfer.
      expect((await request(served.port, "HEAD", path(name), { localAddress: busy })).status).toBe(200);
      // Another address is not held back.
      const other = await request(served.port, "GET", path(name), {
        localAddress: "127.0.0.3",
        headers: { Range: "bytes=0-99" },
      });
      expect(other.status).toBe(206);
      expect(other.body.equals(bytes.subarray(0, 100))).toBe(true);
    } finally {
      for (const c of both) c.socket.destroy();
    }
    // Their places come back with their connections.
    await eventually(async () => {
      const res = await request(served.port, "GET", path(name), {
        localAddress: busy,
        headers: { Range: "bytes=0-99" },
      });
      return res.status === 206 ? true : undefined;
    });
    await eventually(async () => (memory().inUseBytes === 0 ? true : undefined));
  });
});

describe("idle transfers (FILE_IDLE_TIMEOUT_MS 300)", () => {
  let idle: TestContext;
  let served: ServedApp;
  const name = uniqueName("idle");
  const memory = () => idle.deps.services.files.memory;
  beforeAll(async () => {
    idle = await createTestContext({ FILE_CHUNK_SIZE: String(64 * KIB), FILE_IDLE_TIMEOUT_MS: "300" });
    served = await serveApp(idle.app);
    await store(idle, name, randomBytes(STALL_FILE_BYTES));
  });
  afterAll(async () => {
    await served.close();
    await dropKeys(idle);
    await idle.close();
  });

  it("closes a download whose client stops reading, and gives its buffers and its lease back", async () => {
    const client = await stalledGet(served.port, path(name));
    expect(client.status).toBe(200);
    await eventually(async () => (memory().inUseBytes === 0 ? true : undefined));
    await eventually(async () =>
      (await idle.deps.fileStore.zcard(storeOf(idle).keys.leases(name))) === 0 ? true : undefined,
    );
    expect(idle.logs.some((l) => l.includes("download stalled") && l.includes(name))).toBe(true);
    // The server closed the connection: reading on, the client finds it ends short of the file.
    let received = client.socket.bytesRead;
    client.socket.on("data", () => {
      received = client.socket.bytesRead;
    });
    client.socket.resume();
    await client.closed;
    expect(received).toBeLessThan(STALL_FILE_BYTES);
  });

  it("does not take a download queued behind a slow answer on its connection (pipelining) for an idle one", async () => {
    const small = uniqueName("queued");
    const bytes = randomBytes(MIB);
    await store(idle, small, bytes);
    // The first answer takes a second (a verification waited for, with no worker running), far
    // past the idle timeout; the download behind it waits its turn meanwhile, then goes out whole.
    const received = await new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect(served.port, "127.0.0.1", () => {
        socket.write(
          `POST ${path(small)}/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nPrefer: wait=1\r\nContent-Length: 0\r\n\r\n` +
            `GET ${path(small)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
        );
      });
      let all = Buffer.alloc(0);
      /** Where the download's body starts, once its head is in. */
      const bodyAt = () => {
        const head = all.indexOf("HTTP/1.1 200");
        return head < 0 ? -1 : all.indexOf("\r\n\r\n", head) + 4;
      };
      socket.on("data", (d: Buffer) => {
        all = Buffer.concat([all, d]);
        const at = bodyAt();
        if (at >= 4 && all.length - at >= bytes.length) socket.end();
      });
      socket.on("close", () => resolve(all));
      socket.on("error", reject);
    });
    expect(received.subarray(0, 12).toString()).toBe("HTTP/1.1 202");
    const head = received.indexOf("HTTP/1.1 200");
    expect(head).toBeGreaterThan(0);
    expect(received.subarray(received.indexOf("\r\n\r\n", head) + 4).equals(bytes)).toBe(true);
  });

  it("errors the web stream of a download nobody pulls, and gives its buffers back", async () => {
    const res = await idle.app.request(path(name));
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    if (!reader) throw new Error("no body");
    expect((await reader.read()).done).toBe(false);
    await eventually(async () => (memory().inUseBytes === 0 ? true : undefined));
    await expect(reader.read()).rejects.toThrow(/pulled nothing/);
  });

  it("aborts an upload whose client stops sending: 408 REQUEST_TIMEOUT, the connection closed, no chunk kept", async () => {
    const before = (await keysOf(idle)).sort();
    const upload = uniqueName("idle-upload");
    const res = await new Promise<{ status: number; body: string; closed: Promise<void> }>(
      (resolve, reject) => {
        const req = openChunkedPut(served.port, upload);
        // Two chunks and a bit, then nothing, and the request never ends.
        req.write(randomBytes(150 * KIB));
        req.on("response", (answer) => {
          const closed = new Promise<void>((done) => answer.socket.once("close", () => done()));
          let body = "";
          answer.setEncoding("utf8").on("data", (d: string) => {
            body += d;
          });
          answer.on("end", () => resolve({ status: answer.statusCode ?? 0, body, closed }));
          answer.on("error", reject);
        });
      },
    );
    expect(res.status).toBe(408);
    expect((JSON.parse(res.body) as ErrorJson).error.code).toBe("REQUEST_TIMEOUT");
    await res.closed;
    expect((await keysOf(idle)).sort()).toEqual(before);
    expect(memory().inUseBytes).toBe(0);
    expect((await idle.app.request(path(upload))).status).toBe(404);
    expect(idle.logs.some((l) => l.includes("upload abandoned") && l.includes(upload))).toBe(true);
  });
});

describe("FILE_STORE_MAX_BYTES (1 MiB)", () => {
  let quota: TestContext;
  let served: ServedApp;
  const stored = () => quota.deps.services.files.storedBytes();
  beforeAll(async () => {
    quota = await createTestContext({ FILE_CHUNK_SIZE: String(64 * KIB), FILE_STORE_MAX_BYTES: String(MIB) });
    served = await serveApp(quota.app);
  });
  afterAll(async () => {
    await served.close();
    await dropKeys(quota);
    await quota.close();
  });

  /** A 507 that tells the limit and not how much of it the store holds (other tenants' files). */
  const expectStorageFull = (status: number, body: string | Buffer, storedBytes: number) => {
    expect(status).toBe(507);
    const json = JSON.parse(body.toString()) as ErrorJson;
    expect(json.error.code).toBe("STORAGE_FULL");
    expect(json.error.details).toEqual({ maxBytes: MIB });
    expect(json.error.message).not.toContain(String(storedBytes));
  };

  it("refuses an upload that would take the store past it with 507 STORAGE_FULL, and counts what is deleted or replaced", async () => {
    const a = uniqueName("quota-a");
    const b = uniqueName("quota-b");
    await store(quota, a, randomBytes(600 * KIB));
    expect(await stored()).toBe(600 * KIB);

    // Declared too large for the room left: refused before a byte is read, whoever asks.
    const other = await quota.account("client");
    for (const headers of [{}, other.headers]) {
      const declared = await request(served.port, "PUT", path(uniqueName()), {
        headers: { ...headers, "content-length": 500 * KIB },
      });
      expectStorageFull(declared.status, declared.body, 600 * KIB);
    }

    await store(quota, b, randomBytes(300 * KIB));
    expect(await stored()).toBe(900 * KIB);

    // A chunked upload that grows past it: refused on the way, nothing kept, nothing counted.
    const keys = (await keysOf(quota)).sort();
    const grown = uniqueName("quota-grown");
    const chunked = await request(served.port, "PUT", path(grown), {
      headers: { "transfer-encoding": "chunked" },
      body: randomStream(200 * KIB, 16 * KIB, createHash("sha1")),
    });
    expectStorageFull(chunked.status, chunked.body, 900 * KIB);
    expect((await quota.app.request(path(grown))).status).toBe(404);
    expect((await keysOf(quota)).sort()).toEqual(keys);
    expect(await stored()).toBe(900 * KIB);

    // Replacing a file counts the new bytes instead of the old; deleting one frees its bytes.
    await store(quota, a, randomBytes(100 * KIB));
    expect(await stored()).toBe(400 * KIB);
    // Up to the limit exactly, and not a byte more.
    expect((await put(quota, uniqueName(), randomBytes(624 * KIB))).status).toBe(201);
    expect(await stored()).toBe(MIB);
    expect((await put(quota, uniqueName(), randomBytes(1))).status).toBe(507);
    expect((await quota.app.request(path(b), { method: "DELETE" })).status).toBe(204);
    expect(await stored()).toBe(MIB - 300 * KIB);
  });
});
