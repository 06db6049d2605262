import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { type Job, Worker } from "bullmq";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDatabase, type Database } from "../../db/client.js";
import { withConcurrency, workerConfigSchema } from "../../domains/config.js";
import { createSecretsService } from "../../domains/secrets/service.js";
import { parseConfig } from "../../lib/config.js";
import { createRedis } from "../../lib/redis.js";
import {
  createSealKeyRing,
  decodeKey,
  GCM_NONCE_BYTES,
  gcmEncrypt,
  seal,
  sealKeyId,
} from "../../lib/sealing.js";
import { storeSealContext } from "../../queues/encryption.js";
import {
  createTestContext,
  eventually,
  TEST_SEAL_KEY,
  type TestContext,
} from "../../test/helpers/context.js";
import { peer } from "../../test/helpers/http.js";
import { trackWorker } from "../../test/helpers/workers.js";
import { encryptionProcessor } from "../../workers/encryption.processor.js";
import { type Processor, type RunningWorkers, startWorkers } from "../../workers/runtime.js";
import { createApp } from "../app.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
}
interface JobAccepted {
  job: { queue: string; id: string; statusUrl: string };
}
interface LogLine {
  msg: string;
  level: number;
  [k: string]: unknown;
}

const run = randomBytes(4).toString("hex");
const json = (body: unknown) => (typeof body === "string" ? body : JSON.stringify(body));

/**
 * Requests to the test context's app, from `address` when given (app.request has no socket
 * otherwise), with an account's `credentials` when given (anonymous otherwise).
 */
function client(ctx: () => TestContext, address?: string, credentials: Record<string, string> = {}) {
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> => {
    const res = await ctx().app.request(
      path,
      {
        method: "POST",
        headers: { "content-type": "application/json", ...credentials, ...headers },
        body: json(body),
      },
      address === undefined ? undefined : peer(address),
    );
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: res.status, headers: res.headers, body: parsed };
  };

  /** Waits until a job has finished (completed or failed) and returns its view. */
  const finished = (statusUrl: string) =>
    eventually(async () => {
      const res = await ctx().app.request(statusUrl, { headers: credentials });
      const view = (await res.json()) as { state: string };
      return ["completed", "failed"].includes(view.state) ? view : undefined;
    }, 20_000);

  return {
    post,
    finished,
    /** Stores and waits until the worker has written it. */
    async store(id: string, key: string, value: unknown) {
      const res = await post("/v1/secrets", { id, encryption_key: key, value }, { Prefer: "wait=10" });
      if (res.status === 202) {
        const view = await finished((res.body as JobAccepted).job.statusUrl);
        expect(view).toMatchObject({ state: "completed" });
      } else {
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.body).toEqual({ id, stored: true });
      }
    },
    /** Enqueues a store without waiting for it. */
    async submit(id: string, key: string, value: unknown): Promise<JobAccepted["job"]> {
      const res = await post("/v1/secrets", { id, encryption_key: key, value });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return (res.body as JobAccepted).job;
    },
    retrieve: (body: Record<string, unknown>) => post("/v1/secrets/retrieve", body),
    /** Retrieval that must succeed; answers the array. */
    async values(id: string, key: string, extra: Record<string, unknown> = {}) {
      const res = await post("/v1/secrets/retrieve", { id, decryption_key: key, ...extra });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(Array.isArray(res.body)).toBe(true);
      return res.body as { id: string; value: unknown }[];
    },
  };
}

const logLines = (t: TestContext): LogLine[] => t.logs.map((l) => JSON.parse(l) as LogLine);

// ---------------------------------------------------------------------------------------------

describe("secrets (default settings, workers running)", () => {
  let t: TestContext;
  const api = client(() => t);
  beforeAll(async () => {
    t = await createTestContext();
    t.startWorkers();
  });
  afterAll(() => t.close());

  it("answers a store with 202 and the job, whose data and result keep no secret", async () => {
    const id = `job-${run}`;
    const res = await api.post("/v1/secrets", { id, encryption_key: "k-job", value: { a: 1 } });
    expect(res.status).toBe(202);
    const { job } = res.body as JobAccepted;
    expect(job.queue).toBe("encryption");
    expect(res.headers.get("location")).toBe(job.statusUrl);
    const view = await api.finished(job.statusUrl);
    expect(view).toMatchObject({ state: "completed", result: { id, stored: true } });
    const stored = await t.deps.queues.get("encryption").getJob(job.id);
    expect(stored?.data).toEqual({ id, redacted: "stored", owners: ["anonymous"] });
    expect(stored?.returnvalue).toEqual({ id, stored: true });
  });

  it("answers 200 {id, stored: true} with Prefer: wait", async () => {
    const id = `wait-${run}`;
    const res = await api.post("/v1/secrets", { id, encryption_key: "k", value: 1 }, { Prefer: "wait=10" });
    // 202 only if the job took longer than 10 s; it still must complete.
    if (res.status === 202) await api.finished((res.body as JobAccepted).job.statusUrl);
    else expect(res.body).toEqual({ id, stored: true });
    expect(await api.values(id, "k")).toEqual([{ id, value: 1 }]);
  });

  const everyType: [string, Json][] = [
    ["null", null],
    ["false", false],
    ["true", true],
    ["zero", 0],
    ["negative float", -12.5e-7],
    ["large number", 1.7976931348623157e308],
    ["empty string", ""],
    ["string with quotes", 'a "quoted" \\ back\\slash\nnew line\ttab'],
    ["unicode", "héllo wörld — 日本語 — 🌍🚀 — \u0000 after nul"],
    ["empty array", []],
    ["empty object", {}],
    ["array of every type", [null, false, 0, "", [], {}, [1, [2, [3]]], { k: "v" }]],
    ["nested object", { a: { b: { c: [1, 2, { d: null, e: false, ключ: "значение", "🔑": "🌍" }] } }, n: 0 }],
  ];

  it("round-trips every JSON type, by decryption_key and by its synonym encryption_key", async () => {
    const ids = everyType.map((_, i) => `rt-${run}-${String(i).padStart(2, "0")}`);
    await Promise.all(everyType.map(([, value], i) => api.store(ids[i] as string, "round-trip key", value)));
    for (const [i, [label, value]] of everyType.entries()) {
      const id = ids[i] as string;
      expect(await api.values(id, "round-trip key"), label).toEqual([{ id, value }]);
    }
    const all = await api.retrieve({ id: `rt-${run}-*`, encryption_key: "round-trip key" });
    expect(all.status).toBe(200);
    expect(all.body).toEqual(everyType.map(([, value], i) => ({ id: ids[i], value })));
  });

  it("returns only the records the key opens from a wildcard over mixed keys, logging the others", async () => {
    const p = `mix-${run}`;
    await Promise.all([
      api.store(`${p}-a`, "key-one", "a"),
      api.store(`${p}-b`, "key-two", "b"),
      api.store(`${p}-c`, "key-one", "c"),
      api.store(`${p}-d`, "key-two", "d"),
    ]);
    const res = await api.post(
      "/v1/secrets/retrieve",
      { id: `${p}-*`, decryption_key: "key-one" },
      { "x-request-id": `rid-mix-${run}` },
    );
    expect(res.body).toEqual([
      { id: `${p}-a`, value: "a" },
      { id: `${p}-c`, value: "c" },
    ]);
    const skipped = logLines(t).filter((l) => l.requestId === `rid-mix-${run}` && l.secretId !== undefined);
    expect(skipped.map((l) => l.secretId).sort()).toEqual([`${p}-b`, `${p}-d`]);
    for (const line of skipped) {
      expect(line.reason).toMatch(/authentication failed/);
      expect(JSON.stringify(line)).not.toContain("key-one");
    }
    expect(await api.values(`${p}-*`, "key-two")).toEqual([
      { id: `${p}-b`, value: "b" },
      { id: `${p}-d`, value: "d" },
    ]);
  });

  it("answers [] with 200 for a wrong key (and logs it) and for an unknown id", async () => {
    const id = `wrong-${run}`;
    await api.store(id, "right key", { secret: true });
    const res = await api.post(
      "/v1/secrets/retrieve",
      { id, decryption_key: "wrong key" },
      { "x-request-id": `rid-wrong-${run}` },
    );
    expect(res.status).toBe(200);
    expect(res.body).toEqual([]);
    expect(
      logLines(t).some(
        (l) => l.requestId === `rid-wrong-${run}` && l.secretId === id && typeof l.reason === "string",
      ),
    ).toBe(true);
    expect(await api.values(`unknown-${run}`, "any key")).toEqual([]);
    expect(await api.values(`unknown-${run}-*`, "any key")).toEqual([]);
  });

  it("overwrites: the last store wins", async () => {
    const id = `over-${run}`;
    await api.store(id, "k", "first");
    await api.store(id, "k", { second: [2] });
    expect(await api.values(id, "k")).toEqual([{ id, value: { second: [2] } }]);
  });

  it("replaces a record stored again under another key: the old key no longer opens it", async () => {
    const id = `rekey-${run}`;
    await api.store(id, "old key", "old value");
    await api.store(id, "new key", "new value");
    expect(await api.values(id, "old key")).toEqual([]);
    expect(await api.values(id, "new key")).toEqual([{ id, value: "new value" }]);
  });

  it("keeps the last submitted of many overwrites that two workers process at once", async () => {
    const second = t.startWorkers({ WORKER_QUEUES: "encryption" });
    try {
      const id = `race-${run}`;
      const jobs: JobAccepted["job"][] = [];
      // Submitted one after another (so their order is known), processed concurrently.
      for (let i = 0; i < 40; i++) jobs.push(await api.submit(id, `key-${i % 3}`, { i }));
      await Promise.all(jobs.map((j) => api.finished(j.statusUrl)));
      expect(await api.values(id, `key-${39 % 3}`)).toEqual([{ id, value: { i: 39 } }]);
    } finally {
      await second.close();
    }
  });

  it("treats %, _ and \\ in ids as literal characters, never as SQL wildcards", async () => {
    const p = `lit-${run}-`;
    const ids = [`${p}a%b`, `${p}a_b`, `${p}a\\b`, `${p}axb`, `${p}aXYb`, `${p}a%`];
    await Promise.all(ids.map((id) => api.store(id, "k", id)));
    const idsOf = async (pattern: string) => (await api.values(pattern, "k")).map((r) => r.id);
    expect(await idsOf(`${p}a%b`)).toEqual([`${p}a%b`]);
    expect(await idsOf(`${p}a_b`)).toEqual([`${p}a_b`]);
    expect(await idsOf(`${p}a\\b`)).toEqual([`${p}a\\b`]);
    expect(await idsOf(`${p}a%*`)).toEqual([`${p}a%`, `${p}a%b`]);
    expect(await idsOf(`${p}a_*`)).toEqual([`${p}a_b`]);
    expect(await idsOf(`${p}a\\*`)).toEqual([`${p}a\\b`]);
    // Byte order: % (0x25) < X (0x58) < \ (0x5c) < _ (0x5f) < x (0x78).
    expect(await idsOf(`${p}*b`)).toEqual([`${p}a%b`, `${p}aXYb`, `${p}a\\b`, `${p}a_b`, `${p}axb`]);
  });

  it("matches * patterns: prefix-*, *-suffix and a*b*", async () => {
    const ids = [
      `pre-${run}-1`,
      `pre-${run}-2`,
      `pre-${run}x`,
      `a-${run}-2026`,
      `b-${run}-2026`,
      `c-${run}-2027`,
      `${run}:a1b1`,
      `${run}:ab`,
      `${run}:ba`,
      `${run}:a`,
      `${run}:xaxb`,
    ];
    await Promise.all(ids.map((id) => api.store(id, "pattern key", id)));
    const idsOf = async (pattern: string) => (await api.values(pattern, "pattern key")).map((r) => r.id);
    expect(await idsOf(`pre-${run}-*`)).toEqual([`pre-${run}-1`, `pre-${run}-2`]);
    expect(await idsOf(`*-${run}-2026`)).toEqual([`a-${run}-2026`, `b-${run}-2026`]);
    expect(await idsOf(`${run}:a*b*`)).toEqual([`${run}:a1b1`, `${run}:ab`]);
    expect(await idsOf(`${run}:*`)).toEqual([
      `${run}:a`,
      `${run}:a1b1`,
      `${run}:ab`,
      `${run}:ba`,
      `${run}:xaxb`,
    ]);
  });

  it("does not open a ciphertext copied to another id", async () => {
    const src = `copy-${run}-src`;
    const dst = `copy-${run}-dst`;
    await api.store(src, "copy key", "original");
    await t.deps.database.sql`
      insert into secrets (id, ciphertext, seq) select ${dst}, ciphertext, seq from secrets where id = ${src}`;
    expect(await api.values(dst, "copy key")).toEqual([]);
    expect(await api.values(src, "copy key")).toEqual([{ id: src, value: "original" }]);
    expect(
      logLines(t).some((l) => l.secretId === dst && /authentication failed/.test(String(l.reason))),
    ).toBe(true);
  });

  it("fails a job whose sealed payload is malformed, and keeps no sealed data on it", async () => {
    const id = `malformed-${run}`;
    const sealed = seal(
      createSealKeyRing(decodeKey(TEST_SEAL_KEY)),
      JSON.stringify({ id }),
      storeSealContext(id),
    );
    const job = await t.deps.queues.get("encryption").add("secrets.store", { id, sealed });
    const view = await api.finished(`/v1/jobs/encryption/${job.id}`);
    expect(view).toMatchObject({ state: "failed", failedReason: "sealed payload is malformed" });
    expect((await t.deps.queues.get("encryption").getJob(job.id ?? ""))?.data).toEqual({
      id,
      redacted: "failed",
    });
  });

  it("redacts a job whose payload does not parse, though it fails before the processor's own checks", async () => {
    const id = "x".repeat(300);
    const sealed = seal(createSealKeyRing(decodeKey(TEST_SEAL_KEY)), "{}", storeSealContext(id));
    const queue = t.deps.queues.get("encryption");
    const job = await queue.add("secrets.store", { id, sealed });
    const view = await api.finished(`/v1/jobs/encryption/${job.id}`);
    expect(view).toMatchObject({ state: "failed" });
    // The failure hook runs just after BullMQ has failed the job.
    await eventually(async () =>
      (await queue.getJob(job.id ?? ""))?.data.sealed === undefined ? true : undefined,
    );
    expect((await queue.getJob(job.id ?? ""))?.data).toEqual({ id, redacted: "failed" });
  });

  describe("rejects bad input with a 4xx and the error body, enqueuing nothing", () => {
    const long = "x".repeat(257);
    const storeCases: [string, unknown, number, string][] = [
      ["a body that is not JSON", "{not json", 400, "INVALID_JSON"],
      ["a body that is not an object", "[1,2]", 400, "VALIDATION_FAILED"],
      ["a missing id", { encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an empty id", { id: "", encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an id that is not a string", { id: 42, encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an id with *", { id: "a*b", encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an id of 257 characters", { id: long, encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an id with NUL", { id: "a\u0000b", encryption_key: "k", value: 1 }, 400, "VALIDATION_FAILED"],
      ["a missing key", { id: "x", value: 1 }, 400, "VALIDATION_FAILED"],
      ["an empty key", { id: "x", encryption_key: "", value: 1 }, 400, "VALIDATION_FAILED"],
      ["a key that is not a string", { id: "x", encryption_key: 7, value: 1 }, 400, "VALIDATION_FAILED"],
      ["a missing value", { id: "x", encryption_key: "k" }, 400, "VALIDATION_FAILED"],
      [
        "a value over SECRETS_MAX_VALUE_BYTES",
        { id: "x", encryption_key: "k", value: "v".repeat(1024 * 1024) },
        413,
        "PAYLOAD_TOO_LARGE",
      ],
      ["a value nested 5,000 levels deep", nestedStore("deep", 5_000), 400, "VALIDATION_FAILED"],
      [
        "a body far over the limit",
        { id: "x", encryption_key: "k", value: "v".repeat(2 * 1024 * 1024) },
        413,
        "PAYLOAD_TOO_LARGE",
      ],
    ];
    it.each(storeCases)("store: %s → %i", async (_label, body, status, code) => {
      const before = await t.deps.queues.get("encryption").count();
      const res = await api.post("/v1/secrets", body);
      expect(res.status).toBe(status);
      const error = (res.body as { error: { code: string; message: string; requestId: string } }).error;
      expect(error.code).toBe(code);
      expect(error.requestId).toBe(res.headers.get("x-request-id"));
      expect(await t.deps.queues.get("encryption").count()).toBe(before);
    });

    it("store: keeps a value nested 64 levels deep, and refuses 65 with a message naming the limit", async () => {
      const id = `depth-${run}`;
      const kept = await api.post("/v1/secrets", nestedStore(id, 64), { Prefer: "wait=10" });
      expect([200, 202]).toContain(kept.status);
      if (kept.status === 202) await api.finished((kept.body as JobAccepted).job.statusUrl);
      const [record] = await api.values(id, "k");
      expect(JSON.stringify(record?.value)).toBe(`${"[".repeat(64)}${"]".repeat(64)}`);
      const refused = await api.post("/v1/secrets", nestedStore(id, 65));
      expect(refused.status).toBe(400);
      const error = (refused.body as { error: { code: string; message: string } }).error;
      expect(error.code).toBe("VALIDATION_FAILED");
      expect(JSON.stringify(refused.body)).toMatch(/nested more than 64 levels/);
    });

    it("store: accepts a value just under the limit (the body limit leaves room for it)", async () => {
      // 1 MiB as JSON, quotes included: over the app's general 1 MiB body limit once wrapped.
      const value = "v".repeat(1024 * 1024 - 2);
      const id = `big-${run}`;
      await api.store(id, "k", value);
      const [record] = await api.values(id, "k");
      expect(record?.value).toBe(value);
    });

    const retrieveCases: [string, unknown, number, string][] = [
      ["a body that is not JSON", "nope", 400, "INVALID_JSON"],
      ["a missing id", { decryption_key: "k" }, 400, "VALIDATION_FAILED"],
      ["an empty id", { id: "", decryption_key: "k" }, 400, "VALIDATION_FAILED"],
      ["an id of 257 characters", { id: long, decryption_key: "k" }, 400, "VALIDATION_FAILED"],
      ["a missing key", { id: "x" }, 400, "VALIDATION_FAILED"],
      ["an empty key", { id: "x", decryption_key: "" }, 400, "VALIDATION_FAILED"],
      ["two different keys", { id: "x", decryption_key: "a", encryption_key: "b" }, 400, "VALIDATION_FAILED"],
      ["a limit of 0", { id: "x", decryption_key: "k", limit: 0 }, 400, "VALIDATION_FAILED"],
      ["a limit over the cap", { id: "x", decryption_key: "k", limit: 1001 }, 400, "VALIDATION_FAILED"],
      ["a fractional limit", { id: "x", decryption_key: "k", limit: 1.5 }, 400, "VALIDATION_FAILED"],
    ];
    it.each(retrieveCases)("retrieve: %s → %i", async (_label, body, status, code) => {
      const res = await api.post("/v1/secrets/retrieve", body);
      expect(res.status).toBe(status);
      expect((res.body as { error: { code: string } }).error.code).toBe(code);
    });

    it("rejects a body not declared as JSON with 415", async () => {
      for (const path of ["/v1/secrets", "/v1/secrets/retrieve"]) {
        const res = await t.app.request(path, {
          method: "POST",
          body: "x",
          headers: { "content-type": "text/plain" },
        });
        expect(res.status, path).toBe(415);
      }
    });

    it("never echoes the key in an error", async () => {
      const res = await api.post("/v1/secrets", { id: "a*b", encryption_key: "echo-me-not", value: 1 });
      expect(JSON.stringify(res.body)).not.toContain("echo-me-not");
    });
  });

  it("describes both routes in the OpenAPI document", async () => {
    const doc = (await (await t.app.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    expect(Object.keys(doc.paths["/v1/secrets"]?.post?.responses ?? {})).toEqual(
      expect.arrayContaining(["200", "202", "400", "413"]),
    );
    expect(Object.keys(doc.paths["/v1/secrets/retrieve"]?.post?.responses ?? {})).toEqual(
      expect.arrayContaining(["200", "400", "429"]),
    );
  });

  it("leaves the value and the key nowhere: not in Postgres, not in Redis, not in the logs", async () => {
    const marker = randomBytes(12).toString("hex");
    const value = `LEAK-VALUE-${marker}-the-plaintext`;
    const key = `LEAK-KEY-${marker}-the-client-key`;
    const id = `leak-${run}`;
    // One store answered at once, one waited for, one overwritten, then read well and badly.
    await api.store(id, key, { nested: [value], also: value });
    const job = await api.submit(`${id}-2`, key, value);
    await api.finished(job.statusUrl);
    expect(await api.values(`${id}*`, key)).toHaveLength(2);
    expect(await api.values(`${id}*`, `${key}-wrong`)).toEqual([]);

    const needles = [...forms(value), ...forms(key)];
    const pg = await dumpPostgres(t.db.url);
    const redis = await dumpRedis(t);
    const logs = t.logs.join("\n");
    // The scans see what they should: the (non-secret) id is in all three.
    expect(pg).toContain(id);
    expect(redis).toContain(id);
    expect(logs).toContain(id);
    for (const needle of needles) {
      expect(pg.includes(needle), `Postgres holds ${needle}`).toBe(false);
      expect(redis.includes(needle), `Redis holds ${needle}`).toBe(false);
      expect(logs.includes(needle), `logs hold ${needle}`).toBe(false);
    }
  });
});

/**
 * A store body, as text, whose value is `depth` nested arrays: JSON.stringify itself could not
 * write one deep enough to matter.
 */
function nestedStore(id: string, depth: number): string {
  return `{"id":${JSON.stringify(id)},"encryption_key":"k","value":${"[".repeat(depth)}${"]".repeat(depth)}}`;
}

/** The text itself, its hex, and its base64 at each of the three alignments it can have in a longer text. */
function forms(text: string): string[] {
  const bytes = Buffer.from(text, "utf8");
  const out = [text, bytes.toString("hex")];
  for (const encoding of ["base64", "base64url"] as const) {
    for (let offset = 0; offset < 3; offset++) {
      const encoded = Buffer.concat([Buffer.alloc(offset), bytes]).toString(encoding);
      // Drop the group that mixes in preceding bytes and the last one, which may mix in following bytes.
      out.push(encoded.slice(offset === 0 ? 0 : 4, -4));
    }
  }
  return out;
}

/** Every row of every table of the database, as text (bytea as hex). */
async function dumpPostgres(url: string): Promise<string> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const tables = await sql<{ schema: string; name: string }[]>`
      select table_schema as schema, table_name as name from information_schema.tables
      where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`;
    expect(tables.map((t) => t.name)).toContain("secrets");
    const parts: string[] = [];
    for (const table of tables) {
      const rows = await sql.unsafe<{ row: string }[]>(
        `select t::text as row from "${table.schema}"."${table.name}" t`,
      );
      parts.push(...rows.map((r) => r.row));
    }
    return parts.join("\n");
  } finally {
    await sql.end();
  }
}

/** Every key under the test's prefix, read according to its type (job hashes, lists, streams…). */
async function dumpRedis(t: TestContext): Promise<string> {
  const redis = t.deps.redis;
  const parts: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${t.prefix}*`, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      parts.push(key);
      const type = await redis.type(key);
      const add = (values: Buffer[]) => parts.push(...values.map((v) => v.toString("latin1")));
      if (type === "string") add([(await redis.getBuffer(key)) ?? Buffer.alloc(0)]);
      else if (type === "hash") add(Object.entries(await redis.hgetallBuffer(key)).flat() as Buffer[]);
      else if (type === "list") add(await redis.lrangeBuffer(key, 0, -1));
      else if (type === "set") add(await redis.smembersBuffer(key));
      else if (type === "zset") add(await redis.zrangeBuffer(key, 0, -1));
      else if (type === "stream")
        add((await redis.xrangeBuffer(key, "-", "+")).flatMap(([entryId, fields]) => [entryId, ...fields]));
      else throw new Error(`unexpected Redis type ${type} at ${key}`);
    }
  } while (cursor !== "0");
  return parts.join("\n");
}

// ---------------------------------------------------------------------------------------------

describe("secrets with small limits (SECRETS_MAX_MATCHES=3, 3 failed decryptions, 1 KiB values)", () => {
  let t: TestContext;
  const api = client(() => t);
  beforeAll(async () => {
    t = await createTestContext({
      SECRETS_MAX_MATCHES: "3",
      SECRETS_FAILED_DECRYPT_LIMIT: "3",
      SECRETS_FAILED_DECRYPT_WINDOW_SECONDS: "60",
      SECRETS_MAX_VALUE_BYTES: "1024",
    });
    t.startWorkers();
  });
  afterAll(() => t.close());

  /** The error of a refusal, checked for the platform's body (and Retry-After on a 429). */
  function refusal(res: Reply, status: number, code: string) {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    const error = (res.body as { error: { code: string; message: string } }).error;
    expect(error.code).toBe(code);
    if (status === 429) {
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(Number(res.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    }
    return error;
  }

  it("caps the matches and pages with an opaque X-Next-After cursor, sent back as `after`", async () => {
    const p = `page-${run}`;
    const ids = Array.from({ length: 7 }, (_, i) => `${p}-${i}`);
    await Promise.all(ids.map((id) => api.store(id, "page key", id)));
    await api.store(`${p}-3a`, "another key", "not mine");
    const reader = client(() => t, "192.0.2.11");

    const first = await reader.retrieve({ id: `${p}-*`, decryption_key: "page key" });
    expect(first.body).toEqual(ids.slice(0, 3).map((id) => ({ id, value: id })));
    const cursor = first.headers.get("x-next-after");
    // Opaque: no id in it, in clear or percent-encoded.
    expect(cursor).toEqual(expect.any(String));
    expect(cursor).not.toContain(p);

    const seen: unknown[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const res = await reader.retrieve({ id: `${p}-*`, decryption_key: "page key", after });
      seen.push(...(res.body as unknown[]));
      const next = res.headers.get("x-next-after");
      if (next === null) break;
      after = next;
    }
    expect(seen).toEqual(ids.map((id) => ({ id, value: id })));

    const two = await reader.retrieve({ id: `${p}-*`, decryption_key: "page key", limit: 2 });
    expect((two.body as unknown[]).length).toBe(2);
    expect(two.headers.get("x-next-after")).toEqual(expect.any(String));
    refusal(
      await reader.retrieve({ id: `${p}-*`, decryption_key: "page key", limit: 4 }),
      400,
      "VALIDATION_FAILED",
    );
  });

  it("tells a key that opens nothing no id: [] and no cursor, however many records match", async () => {
    const p = `hidden-${run}`;
    await Promise.all(["a", "b", "c", "d"].map((s) => api.store(`${p}-${s}`, "owner key", s)));
    const guesser = client(() => t, "192.0.2.21");
    for (const query of [{ id: `${p}-*`, limit: 1 }, { id: `${p}*`, limit: 2 }, { id: `${p}-*` }]) {
      const res = await guesser.retrieve({ ...query, decryption_key: "a guess" });
      expect(res.status).toBe(200);
      expect(res.body).toEqual([]);
      expect(res.headers.get("x-next-after")).toBeNull();
      for (const [name, value] of res.headers) expect(value, name).not.toContain(p);
    }
  });

  it("honours a cursor only with the key and the pattern it was given to", async () => {
    const p = `bound-${run}`;
    await Promise.all(["a", "b", "c"].map((s) => api.store(`${p}-${s}`, "bound key", s)));
    await api.store(`${p}-z`, "other key", "z");
    const owner = client(() => t, "192.0.2.31");
    const first = await owner.retrieve({ id: `${p}-*`, decryption_key: "bound key", limit: 1 });
    const after = first.headers.get("x-next-after");
    expect(after).toEqual(expect.any(String));
    const next = await owner.retrieve({ id: `${p}-*`, decryption_key: "bound key", limit: 1, after });
    expect(next.body).toEqual([{ id: `${p}-b`, value: "b" }]);

    const other = client(() => t, "192.0.2.32");
    for (const query of [
      { id: `${p}-*`, decryption_key: "other key", after },
      { id: `${p}*`, decryption_key: "bound key", after },
      // What `after` used to be: an id.
      { id: `${p}-*`, decryption_key: "bound key", after: `${p}-a` },
    ]) {
      const error = refusal(await other.retrieve({ ...query, limit: 1 }), 400, "VALIDATION_FAILED");
      expect(JSON.stringify(error)).toMatch(/after/);
    }
  });

  it("counts failed decryptions per address whatever the pattern, and refuses with 429 past the limit", async () => {
    const id = `limited-${run}`;
    await api.store(id, "good key", "v");
    const guesser = client(() => t, "192.0.2.41");
    // Each pattern covering the record used to come with a budget of its own.
    for (const [i, pattern] of [id, `${id}*`, `*${id}`].entries())
      expect(await guesser.values(pattern, `guess-${i}`)).toEqual([]);
    for (const pattern of [`${id}**`, `*${id}*`, id, `unrelated-${run}`])
      refusal(await guesser.retrieve({ id: pattern, decryption_key: "good key" }), 429, "RATE_LIMITED");
    expect(
      logLines(t).some((l) => /too many failed decryptions/.test(l.msg) && l.address === "192.0.2.41"),
    ).toBe(true);
    // Another address is still served.
    expect(await client(() => t, "192.0.2.42").values(id, "good key")).toEqual([{ id, value: "v" }]);
  });

  it("counts an answer with nothing in it, so the limit does not tell which patterns match", async () => {
    const id = `empty-${run}`;
    await api.store(id, "k", 1);
    const caller = client(() => t, "192.0.2.51");
    // Unknown ids cost what a wrong key on a stored id costs; otherwise a guesser near the limit
    // would learn from the next 429 whether a pattern matched anything.
    for (const pattern of [`${id}-none`, `${id}-none-*`, `nothing-${run}-*`])
      expect(await caller.values(pattern, "k")).toEqual([]);
    refusal(await caller.retrieve({ id, decryption_key: "k" }), 429, "RATE_LIMITED");
  });

  it("does not count retrievals that open everything they match", async () => {
    const id = `fine-${run}`;
    await api.store(id, "k", 1);
    const caller = client(() => t, "192.0.2.61");
    for (let i = 0; i < 6; i++) expect(await caller.values(id, "k")).toEqual([{ id, value: 1 }]);
  });

  it("answers 413 for a value over SECRETS_MAX_VALUE_BYTES, measured as JSON", async () => {
    const ok = await api.post("/v1/secrets", {
      id: `small-${run}`,
      encryption_key: "k",
      value: "x".repeat(1022),
    });
    expect(ok.status).toBe(202);
    const res = await api.post("/v1/secrets", {
      id: `small-${run}`,
      encryption_key: "k",
      value: "x".repeat(1023),
    });
    expect(res.status).toBe(413);
    expect((res.body as { error: { message: string } }).error.message).toMatch(/1025 bytes.*1024/);
  });
});

// ---------------------------------------------------------------------------------------------

describe("secrets per account (tenancy)", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext({ SECRETS_MAX_MATCHES: "2" });
    t.startWorkers({ WORKER_QUEUES: "encryption" });
  });
  afterAll(() => t.close());

  it("keeps each account's ids its own: store, exact and wildcard retrieval, overwrite, cursors, job status", async () => {
    const [alice, bob] = [await t.account("client"), await t.account("quant")];
    const as = {
      alice: client(() => t, "192.0.2.41", alice.headers),
      bob: client(() => t, "192.0.2.42", bob.headers),
      anonymous: client(() => t, "192.0.2.43"),
    };
    const id = `shared-${run}`;
    // The same ids, under the same client key, for three tenants.
    for (const [who, api] of Object.entries(as))
      for (const suffix of ["a", "b", "c"])
        await api.store(`${id}-${suffix}`, "one key for all", `${who}-${suffix}`);

    for (const [who, api] of Object.entries(as)) {
      expect(await api.values(`${id}-a`, "one key for all")).toEqual([{ id: `${id}-a`, value: `${who}-a` }]);
      const firstPage = await api.retrieve({ id: `${id}-*`, decryption_key: "one key for all" });
      expect(firstPage.body).toEqual([
        { id: `${id}-a`, value: `${who}-a` },
        { id: `${id}-b`, value: `${who}-b` },
      ]);
      expect(
        await api.values(`${id}-*`, "one key for all", { after: firstPage.headers.get("x-next-after") }),
      ).toEqual([{ id: `${id}-c`, value: `${who}-c` }]);
    }

    // A bare `*` reaches the whole tenant, and no further: page by page, only the caller's own.
    for (const [who, api] of Object.entries(as))
      expect(await allPages(api, "*", "one key for all")).toEqual(
        ["a", "b", "c"].map((suffix) => ({ id: `${id}-${suffix}`, value: `${who}-${suffix}` })),
      );

    // Ids only Alice has answer Bob exactly as ids no one has: nothing, and no cursor to page on.
    for (const n of [1, 2, 3]) await as.alice.store(`${id}-hers-${n}`, "one key for all", n);
    for (const pattern of [`${id}-hers-*`, `${id}-hers-1`, `${id}-nobody-*`]) {
      const reply = await as.bob.retrieve({ id: pattern, decryption_key: "one key for all" });
      expect(reply.status).toBe(200);
      expect(reply.body).toEqual([]);
      expect(reply.headers.get("x-next-after")).toBeNull();
    }

    // Bob overwrites "his" id: Alice's and the anonymous tenant's stay as they were.
    await as.bob.store(`${id}-a`, "bob's new key", "bob overwrote");
    expect(await as.alice.values(`${id}-a`, "one key for all")).toEqual([
      { id: `${id}-a`, value: "alice-a" },
    ]);
    expect(await as.anonymous.values(`${id}-a`, "one key for all")).toEqual([
      { id: `${id}-a`, value: "anonymous-a" },
    ]);
    expect(await as.alice.values(`${id}-a`, "bob's new key")).toEqual([]);

    // Alice's cursor is hers: with the same pattern and key, Bob's retrieval refuses it.
    const alicePage = await as.alice.retrieve({ id: `${id}-*`, decryption_key: "one key for all" });
    const refused = await as.bob.retrieve({
      id: `${id}-*`,
      decryption_key: "one key for all",
      after: alicePage.headers.get("x-next-after"),
    });
    expect(refused.status).toBe(400);

    // A store's job answers its account (also once finished, its data redacted), and no one else.
    const job = await as.alice.submit(`${id}-job`, "one key for all", "x");
    expect(await as.alice.finished(job.statusUrl)).toMatchObject({ state: "completed" });
    expect((await t.app.request(job.statusUrl, { headers: bob.headers })).status).toBe(404);
    expect((await t.app.request(job.statusUrl)).status).toBe(404);
  });

  it("writes a store sealed before secrets had tenants into the anonymous tenant", async () => {
    const alice = await t.account("client");
    const [asAlice, anonymous] = [
      client(() => t, "192.0.2.44", alice.headers),
      client(() => t, "192.0.2.45"),
    ];
    const id = `pre-tenancy-${run}`;
    // What an API of an older deploy sealed: no tenant inside.
    const sealed = seal(
      createSealKeyRing(decodeKey(TEST_SEAL_KEY)),
      JSON.stringify({ id, key: "old key", value: JSON.stringify("from before"), seq: Date.now() * 1000 }),
      storeSealContext(id),
    );
    const job = await t.deps.queues.get("encryption").add("secrets.store", { id, sealed });
    await eventually(async () => ((await job.isCompleted()) ? true : undefined), 20_000);
    expect(await anonymous.values(id, "old key")).toEqual([{ id, value: "from before" }]);
    expect(await asAlice.values(id, "old key")).toEqual([]);
  });
});

/** Every page of a retrieval, following X-Next-After to the end. */
async function allPages(api: ReturnType<typeof client>, pattern: string, key: string) {
  const found: { id: string; value: unknown }[] = [];
  let after: string | undefined;
  for (let page = 0; page < 100; page++) {
    const reply = await api.retrieve({ id: pattern, decryption_key: key, ...(after && { after }) });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    found.push(...(reply.body as { id: string; value: unknown }[]));
    after = reply.headers.get("x-next-after") ?? undefined;
    if (after === undefined) return found;
  }
  throw new Error(`${pattern}: still paging after 100 pages`);
}

describe("secrets failed-decryption limit under concurrency (SECRETS_FAILED_DECRYPT_LIMIT=2)", () => {
  let t: TestContext;
  const api = client(() => t);
  beforeAll(async () => {
    t = await createTestContext({
      SECRETS_FAILED_DECRYPT_LIMIT: "2",
      SECRETS_FAILED_DECRYPT_WINDOW_SECONDS: "60",
    });
    t.startWorkers();
  });
  afterAll(() => t.close());

  /** Every failure slot of this context, with its remaining time to live (-1: none). */
  async function failureSlots(): Promise<{ key: string; value: string | null; pttl: number }[]> {
    const keys = await t.deps.redis.keys(`${t.prefix}:secrets:failed-decrypt:*`);
    return Promise.all(
      keys.map(async (key) => ({
        key,
        value: await t.deps.redis.get(key),
        pttl: await t.deps.redis.pttl(key),
      })),
    );
  }

  it("lets at most the limit of concurrent wrong-key retrievals through, refusing the rest with 429", async () => {
    const id = `burst-${run}`;
    await api.store(id, "good key", "v");
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => api.retrieve({ id, decryption_key: `guess-${i}` })),
    );
    const served = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status === 429);
    expect(served.length).toBeLessThanOrEqual(2);
    expect(served.length + refused.length).toBe(20);
    for (const r of served) expect(r.body).toEqual([]);
    for (const r of refused) {
      const retryAfter = Number(r.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect((r.body as { error: { code: string } }).error.code).toBe("RATE_LIMITED");
    }
    expect(logLines(t).some((l) => /too many failed decryptions/.test(l.msg) && l.pattern === id)).toBe(true);
    // Still refused afterwards, the right key included: the failures stand for the window.
    expect((await api.retrieve({ id, decryption_key: "good key" })).status).toBe(429);
  });

  it("does not count correct-key retrievals from the same address", async () => {
    const id = `steady-${run}`;
    await api.store(id, "k", 1);
    const caller = client(() => t, "192.0.2.71");
    // One failure of the two allowed.
    expect(await caller.values(id, "wrong")).toEqual([]);
    for (let i = 0; i < 10; i++) expect(await caller.values(id, "k")).toEqual([{ id, value: 1 }]);
    // The second failure is still allowed, and the third is refused.
    expect(await caller.values(id, "wrong again")).toEqual([]);
    expect((await caller.retrieve({ id, decryption_key: "k" })).status).toBe(429);
  });

  it("leaves no failure counter without an expiry", async () => {
    const id = `expiry-${run}`;
    await api.store(id, "k", 1);
    const caller = client(() => t, "192.0.2.72");
    for (let i = 0; i < 5; i++) expect(await caller.values(id, "k")).toEqual([{ id, value: 1 }]);
    expect(await caller.values(id, "wrong")).toEqual([]);
    const slots = await failureSlots();
    expect(slots.length).toBeGreaterThan(0);
    for (const s of slots) expect(s.pttl, s.key).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe("secrets key derivations (2 new keys per address per minute, 1 at a time, none queued)", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext({
      SECRETS_KDF_PER_ADDRESS_PER_MINUTE: "2",
      SECRETS_KDF_CONCURRENCY: "1",
      SECRETS_KDF_QUEUE_MAX: "0",
      SECRETS_FAILED_DECRYPT_LIMIT: "1000",
    });
  });
  afterAll(() => t.close());

  it("derives the key even when nothing matches, and limits new keys per address; a cached key is free", async () => {
    const pattern = `nothing-${run}-*`;
    const caller = client(() => t, "192.0.2.81");
    // Nothing matches, yet each new key is derived (and counted): such an answer costs what one
    // over stored records costs, so its speed does not tell whether anything matched.
    expect(await caller.values(pattern, "new key 1")).toEqual([]);
    expect(await caller.values(`nothing-${run}`, "new key 2")).toEqual([]);
    for (let i = 0; i < 5; i++) expect(await caller.values(pattern, "new key 1")).toEqual([]);
    const refused = await caller.retrieve({ id: pattern, decryption_key: "new key 3" });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((refused.body as { error: { message: string } }).error.message).toMatch(/key derivations/);
    // Another address has a budget of its own.
    expect(await client(() => t, "192.0.2.82").values(pattern, "new key 3")).toEqual([]);
  });

  it("runs one derivation at a time and answers 503 with Retry-After beyond it", async () => {
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        client(() => t, `198.51.100.${i + 1}`).retrieve({
          id: `gate-${run}`,
          decryption_key: `gate key ${i}`,
        }),
      ),
    );
    const served = replies.filter((r) => r.status === 200);
    const busy = replies.filter((r) => r.status === 503);
    expect(served.length).toBeGreaterThan(0);
    expect(busy.length).toBeGreaterThan(0);
    expect(served.length + busy.length).toBe(replies.length);
    for (const r of busy) {
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
      expect((r.body as { error: { code: string } }).error.code).toBe("SERVICE_UNAVAILABLE");
    }
  });
});

describe("secrets retrieval while Redis is down", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.close());

  it("answers 503 with Retry-After: the limits cannot be checked, so nothing is served", async () => {
    // Port 1: nothing listens, every connection is refused.
    const redis = createRedis("redis://127.0.0.1:1", "producer", t.logger);
    const secrets = createSecretsService(t.deps.config, { database: t.deps.database, redis });
    try {
      const app = createApp({ ...t.deps, redis, services: { ...t.deps.services, secrets } });
      const res = await app.request("/v1/secrets/retrieve", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: `down-${run}`, decryption_key: "k" }),
      });
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("SERVICE_UNAVAILABLE");
    } finally {
      await secrets.close();
      redis.disconnect();
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("secrets across a seal-key rotation (the API seals under the old key)", () => {
  const OLD_KEY = TEST_SEAL_KEY;
  const NEXT_KEY = "rTXiBqVzMzM4P+tqrlHYo7kxoNGFW4rZgwF1E/ZvgXw=";
  const oldKeyId = sealKeyId(decodeKey(OLD_KEY)).toString("hex");
  let t: TestContext;
  const api = client(() => t);
  beforeAll(async () => {
    t = await createTestContext({ JOB_SEAL_KEY: OLD_KEY });
  });
  afterAll(() => t.close());

  const queue = () => t.deps.queues.get("encryption");
  const storeJob = (id: string, sealed: string) =>
    queue().add("secrets.store", { id, sealed }, { jobId: `${id}-job` });
  const sealedStore = (id: string, value: unknown, sealedWith: string) =>
    seal(
      createSealKeyRing(decodeKey(sealedWith)),
      JSON.stringify({ id, key: "k", value: JSON.stringify(value), seq: Date.now() * 1000 }),
      storeSealContext(id),
    );
  /** A version 0x01 blob, as deploys before the key ring sealed stores: no key id. */
  const sealedStoreV1 = (id: string, value: unknown, key: string) => {
    const plaintext = JSON.stringify({ id, key: "k", value: JSON.stringify(value), seq: Date.now() * 1000 });
    const version = Buffer.of(0x01);
    const aad = Buffer.concat([version, Buffer.from(storeSealContext(id))]);
    const { nonce, body } = gcmEncrypt(decodeKey(key), Buffer.from(plaintext), aad);
    expect(nonce).toHaveLength(GCM_NONCE_BYTES);
    return Buffer.concat([version, nonce, body]).toString("base64");
  };

  it("opens stores sealed under either key of a worker's ring, version 0x01 blobs included", async () => {
    // The middle step of a rotation: this worker seals under the next key and still accepts the old.
    const workers = t.startWorkers({
      WORKER_QUEUES: "encryption",
      JOB_SEAL_KEY: NEXT_KEY,
      JOB_SEAL_KEYS_ACCEPTED: OLD_KEY,
    });
    try {
      const p = `ring-${run}`;
      await api.store(`${p}-api`, "k", "sealed by the API under the old key");
      const jobs = [
        await storeJob(`${p}-next`, sealedStore(`${p}-next`, "sealed under the next key", NEXT_KEY)),
        await storeJob(`${p}-v1`, sealedStoreV1(`${p}-v1`, "sealed before key ids", OLD_KEY)),
      ];
      for (const job of jobs)
        expect(await api.finished(`/v1/jobs/encryption/${job.id}`)).toMatchObject({ state: "completed" });
      expect(await api.values(`${p}-*`, "k")).toEqual([
        { id: `${p}-api`, value: "sealed by the API under the old key" },
        { id: `${p}-next`, value: "sealed under the next key" },
        { id: `${p}-v1`, value: "sealed before key ids" },
      ]);
    } finally {
      await workers.close();
    }
  });

  it("retries, naming the key id, a store sealed under a key the worker no longer holds", async () => {
    const retired = t.startWorkers({ WORKER_QUEUES: "encryption", JOB_SEAL_KEY: NEXT_KEY });
    const id = `retired-${run}`;
    const { id: jobId, statusUrl } = await api.submit(id, "k", "sealed under the retired key");
    try {
      const job = await eventually(async () => {
        const j = await queue().getJob(jobId);
        return j && j.attemptsMade >= 1 ? j : undefined;
      });
      expect(job.failedReason).toContain(`key id ${oldKeyId}`);
      // Not failed for good: a replica that still holds the key can store it.
      expect(await job.getState()).not.toBe("failed");
    } finally {
      await retired.close();
    }
    const accepting = t.startWorkers({
      WORKER_QUEUES: "encryption",
      JOB_SEAL_KEY: NEXT_KEY,
      JOB_SEAL_KEYS_ACCEPTED: OLD_KEY,
    });
    try {
      await (await queue().getJob(jobId))?.promote().catch(() => {});
      expect(await api.finished(statusUrl)).toMatchObject({ state: "completed" });
      expect(await api.values(id, "k")).toEqual([{ id, value: "sealed under the retired key" }]);
    } finally {
      await accepting.close();
    }
  });
});

describe("the public development salt", () => {
  const warning = (t: TestContext) => logLines(t).filter((l) => /SECRETS_KDF_SALT is unset/.test(l.msg));

  it("warns when SECRETS_KDF_SALT is unset, and only then", async () => {
    const unsalted = await createTestContext();
    const salted = await createTestContext({ SECRETS_KDF_SALT: randomBytes(16).toString("hex") });
    try {
      expect(warning(unsalted)).toHaveLength(1);
      expect(warning(unsalted)[0]?.level).toBe(40);
      expect(warning(salted)).toEqual([]);
    } finally {
      await Promise.all([unsalted.close(), salted.close()]);
    }
  });
});

describe("a store job that stalls too often", () => {
  // A context of its own: no worker has run on its queue, so no earlier stalled check (every
  // 15 s) holds back the one below.
  let t: TestContext;
  const api = client(() => t);
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.close());
  const queue = () => t.deps.queues.get("encryption");

  it("redacts a job BullMQ fails for stalling too often, which never reaches the processor", async () => {
    const id = `stalled-${run}`;
    const { id: jobId, statusUrl } = await api.submit(id, "k", "v");
    // A worker that takes the job and dies: its lock lapses, and with no stall allowed its own
    // stalled check marks the job failed (BullMQ fails it when a worker next takes it).
    const connection = createRedis(t.workerConfig.REDIS_URL, "worker", t.logger);
    const dead = trackWorker(
      new Worker("encryption", null, {
        connection,
        prefix: t.prefix,
        autorun: false,
        lockDuration: 100,
        stalledInterval: 100,
        maxStalledCount: 0,
      }),
    );
    try {
      expect((await dead.getNextJob("dead-worker"))?.id).toBe(jobId);
      dead.startStalledCheckTimer();
      await eventually(async () => ((await queue().getJob(jobId))?.deferredFailure ? true : undefined));
    } finally {
      await dead.close();
      await connection.quit();
    }
    const workers = t.startWorkers({ WORKER_QUEUES: "encryption" });
    try {
      const view = await api.finished(statusUrl);
      expect(view).toMatchObject({ state: "failed", failedReason: "job stalled more than allowable limit" });
      await eventually(async () =>
        (await queue().getJob(jobId))?.data.sealed === undefined ? true : undefined,
      );
      expect((await queue().getJob(jobId))?.data).toEqual({ id, redacted: "failed", owners: ["anonymous"] });
    } finally {
      await workers.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** A TCP proxy to Postgres that can be taken down (connections refused and cut) and back up. */
async function createOutageProxy(target: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on("close", () => sockets.delete(sock));
          sock.on("error", () => {});
        }
        client.pipe(upstream).pipe(client);
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve((s.address() as { port: number }).port));
      server = s;
    });
  const port = await listen(0);
  return {
    port,
    async down() {
      const s = server;
      server = undefined;
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
    },
    async up() {
      await listen(port);
    },
  };
}

describe("secrets while Postgres is unreachable", () => {
  let t: TestContext;
  let proxy: Awaited<ReturnType<typeof createOutageProxy>>;
  let proxied: Database;
  const api = client(() => t);
  const workerConfig = () =>
    withConcurrency(parseConfig(workerConfigSchema, { ...t.env, WORKER_QUEUES: "encryption" }));

  /** Workers for `encryption` only, writing through `database`. */
  function startEncryptionWorkers(database: Database): RunningWorkers {
    const config = workerConfig();
    const processor = encryptionProcessorOver(database);
    const workers = startWorkers({
      config,
      logger: t.logger,
      queues: [{ queue: "encryption", concurrency: 8, processor }],
    });
    for (const w of workers.workers) trackWorker(w);
    return workers;
  }

  /** The real processor, over a secrets service of its own that writes through `database`. */
  function encryptionProcessorOver(database: Database): Processor {
    const config = workerConfig();
    const secrets = createSecretsService(config, { database, redis: t.deps.redis });
    const processor = encryptionProcessor({
      config,
      logger: t.logger,
      services: { ...t.deps.services, secrets },
    });
    return { ...processor, close: () => secrets.close() };
  }

  const stateOf = async (jobId: string) => (await t.deps.queues.get("encryption").getJob(jobId))?.getState();

  beforeAll(async () => {
    t = await createTestContext();
    proxy = await createOutageProxy(new URL(t.db.url));
    const url = new URL(t.db.url);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    proxied = createDatabase(url.toString(), { max: 4 });
  });
  afterAll(async () => {
    await proxied.close();
    await proxy.down();
    await t.close();
  });

  it("applies the last submitted store even when an older one is processed after it", async () => {
    // No worker runs in this context yet: run the real processor on the jobs in reverse order.
    const id = `order-${run}`;
    const older = await api.submit(id, "k", "older");
    const newer = await api.submit(id, "k", "newer");
    const processor = encryptionProcessorOver(t.deps.database);
    const queue = t.deps.queues.get("encryption");
    const [jobOld, jobNew] = (await Promise.all([queue.getJob(older.id), queue.getJob(newer.id)])) as Job[];
    try {
      await processor.handle(jobNew as Job, t.logger);
      await processor.handle(jobOld as Job, t.logger);
    } finally {
      await processor.close?.();
      await Promise.all([jobOld?.remove(), jobNew?.remove()]);
    }
    expect(await api.values(id, "k")).toEqual([{ id, value: "newer" }]);
  });

  it("lands a store acknowledged while Postgres is down once it is back, spending no attempt", async () => {
    await proxy.down();
    const workers = startEncryptionWorkers(proxied);
    try {
      const id = `outage-${run}`;
      const job = await api.submit(id, "k", { during: "outage" });
      // The worker found Postgres unreachable and put the job back, delayed, more than once.
      await eventually(async () => {
        const j = await t.deps.queues.get("encryption").getJob(job.id);
        return j && (await j.getState()) === "delayed" && j.attemptsStarted >= 2 ? true : undefined;
      }, 20_000);
      expect(
        logLines(t).some((l) => l.msg === "backing service unreachable; job delayed" && l.jobId === job.id),
      ).toBe(true);
      await proxy.up();
      const view = await api.finished(job.statusUrl);
      // BullMQ counts the attempt that completes; the runs that found Postgres down are not counted.
      expect(view).toMatchObject({ state: "completed", attempts: 1, result: { id, stored: true } });
      expect(await api.values(id, "k")).toEqual([{ id, value: { during: "outage" } }]);
    } finally {
      await workers.close();
    }
  });

  it("does not let a late retry of an older store overwrite a newer one", async () => {
    const id = `late-${run}`;
    // A worker that cannot reach Postgres takes the older store and has to put it off…
    await proxy.down();
    const cutOff = startEncryptionWorkers(proxied);
    const older = await api.submit(id, "k", "older");
    try {
      await eventually(async () => ((await stateOf(older.id)) === "delayed" ? true : undefined), 20_000);
    } finally {
      await cutOff.close();
      await proxy.up();
    }
    // …and its retry is held back until a healthy worker has stored a newer value.
    const olderJob = (await t.deps.queues.get("encryption").getJob(older.id)) as Job;
    expect(await olderJob.getState()).toBe("delayed");
    await olderJob.changeDelay(60_000);
    const healthy = t.startWorkers({ WORKER_QUEUES: "encryption" });
    try {
      await api.store(id, "k", "newer");
      await olderJob.promote();
      const view = await api.finished(older.statusUrl);
      expect(view).toMatchObject({ state: "completed" });
      expect(await api.values(id, "k")).toEqual([{ id, value: "newer" }]);
    } finally {
      await healthy.close();
    }
  });
});
