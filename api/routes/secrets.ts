// Secrets: an encrypted key-value store. Stores are sealed and enqueued on `encryption` (the
// worker derives the key and writes); retrieval reads and decrypts here, one slow key derivation
// per request at most, and limits failed decryptions per client address and id pattern.
import { createHash } from "node:crypto";
import { getConnInfo } from "@hono/node-server/conninfo";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Redis } from "ioredis";
import { findSecrets } from "../../db/queries/secrets.js";
import { CryptoError, decryptRecord, seal } from "../../lib/crypto.js";
import { AppError } from "../../lib/errors.js";
import { createSecretsKeys, type SecretsKeys } from "../../lib/secrets-keys.js";
import {
  encryptionQueue,
  SECRET_ID_MAX,
  type SealedStore,
  storeSealContext,
} from "../../queues/encryption.js";
import type { AppDeps, AppEnv } from "../context.js";
import { serviceUnavailable } from "../errors.js";
import { submitJob } from "../jobs.js";
import { errorResponses, jobAcceptedSchema, jobSubmissionHeaders, validationHook } from "../openapi.js";

export const SECRETS_PATH = "/v1/secrets";

/** The store takes a value of up to SECRETS_MAX_VALUE_BYTES, so it has a body limit of its own. */
export const isSecretStore = (method: string, path: string) => method === "POST" && path === SECRETS_PATH;
/** Room for the id, the key and the JSON around a value of the largest size allowed. */
const ENVELOPE_BYTES = 64 * 1024;
const KEY_MAX = 4096;

// Postgres text cannot hold NUL, and a lone surrogate would be stored as U+FFFD: another id.
const storableId = (s: string) => !s.includes("\u0000") && !/\p{Cs}/u.test(s);

const idField = z
  .string()
  .min(1)
  .max(SECRET_ID_MAX)
  .refine(storableId, "must not contain NUL or unpaired surrogates");
const keyField = z.string().min(1, "must not be empty").max(KEY_MAX);

const storeBody = z
  .object({
    id: idField
      .refine((s) => !s.includes("*"), "must not contain * (it is the wildcard of retrieval)")
      .openapi({ example: "engineering-jobs-2026", description: "1-256 characters, no `*`" }),
    encryption_key: keyField.openapi({
      description: "The client's key. Only the worker sees it, sealed in the job; never stored.",
    }),
    value: z
      .unknown()
      .refine((v) => v !== undefined, "is required (any JSON value, null included)")
      .openapi({ description: "Any JSON value", example: { title: "Engineer", open: true } }),
  })
  .openapi("SecretStore");

const retrieveBody = z
  .object({
    id: idField.openapi({
      example: "engineering-jobs-*",
      description: "An exact id, or a pattern where `*` matches any run of characters",
    }),
    decryption_key: keyField.optional(),
    encryption_key: keyField.optional().openapi({ description: "Synonym of decryption_key" }),
    after: idField.optional().openapi({
      description: "Only ids after this one (exclusive): the X-Next-After of the previous page",
    }),
    limit: z
      .number()
      .int()
      .min(1)
      .optional()
      .openapi({ description: "At most this many matches (default and maximum: SECRETS_MAX_MATCHES)" }),
  })
  .superRefine((b, ctx) => {
    if (b.decryption_key === undefined && b.encryption_key === undefined)
      ctx.addIssue({ code: "custom", path: ["decryption_key"], message: "is required" });
    else if (
      b.decryption_key !== undefined &&
      b.encryption_key !== undefined &&
      b.decryption_key !== b.encryption_key
    )
      ctx.addIssue({
        code: "custom",
        path: ["encryption_key"],
        message: "differs from decryption_key; send one of them",
      });
  })
  .openapi("SecretRetrieve");

const secretSchema = z.object({ id: z.string(), value: z.unknown() }).openapi("Secret");

const storeRoute = createRoute({
  method: "post",
  path: SECRETS_PATH,
  tags: ["secrets"],
  summary: "Store (or overwrite) a value under an id, encrypted with the client's key",
  description:
    "Answers 202 with the `encryption` job. The last store submitted for an id wins, whatever order " +
    "workers run them in. With `Prefer: wait=N` it answers 200 once the value is stored.",
  request: {
    headers: jobSubmissionHeaders,
    body: { required: true, content: { "application/json": { schema: storeBody } } },
  },
  responses: {
    202: {
      description: "Accepted; see Location for the job",
      content: { "application/json": { schema: jobAcceptedSchema } },
    },
    200: {
      description: "Stored (Prefer: wait)",
      content: {
        "application/json": {
          schema: z.object({ id: z.string(), stored: z.literal(true) }).openapi("SecretStored"),
        },
      },
    },
    ...errorResponses(400, 413, 415),
  },
});

const retrieveRoute = createRoute({
  method: "post",
  path: `${SECRETS_PATH}/retrieve`,
  tags: ["secrets"],
  summary: "Records matching an id or a `*` pattern that the key opens, in id order",
  description:
    "Always an array: records the key does not open are left out (and logged), so a wrong key " +
    "gives []. At most `limit` matches are examined; when more exist, the X-Next-After header " +
    "carries the last id examined (percent-encoded): send it decoded as `after` for the next page. " +
    "A POST, so the key never travels in a URL.",
  request: { body: { required: true, content: { "application/json": { schema: retrieveBody } } } },
  responses: {
    200: {
      description: "The records the key opens",
      headers: z.object({
        "X-Next-After": z.string().optional().openapi({ description: "More matches exist after this id" }),
      }),
      content: { "application/json": { schema: z.array(secretSchema) } },
    },
    ...errorResponses(400, 413, 415, 429),
  },
});

// ---- Per-app state ----------------------------------------------------------------------------

// One per app (keyed by its deps, so each test app has its own): the decoded keys and the
// master-key cache live as long as the process, not per request.
const keysByApp = new WeakMap<AppDeps, SecretsKeys>();

function secretsKeys(deps: AppDeps): SecretsKeys {
  let keys = keysByApp.get(deps);
  if (!keys) {
    if (deps.config.JOB_SEAL_KEY === undefined)
      throw new AppError("INTERNAL", "secrets are not configured on this server (JOB_SEAL_KEY)");
    keys = createSecretsKeys(deps.config);
    keysByApp.set(deps, keys);
  }
  return keys;
}

// ---- Write order --------------------------------------------------------------------------------

// max(previous + 1, Redis time in µs): increasing across every API replica (one key), and still
// ahead of every seq already written if the counter is lost (a Redis restored from an old AOF).
const NEXT_SEQ_SCRIPT = `
local v = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v < now then
  redis.call('SET', KEYS[1], now)
  return now
end
return v`;

export async function nextSecretSeq(redis: Redis, prefix: string): Promise<number> {
  return Number(await redis.eval(NEXT_SEQ_SCRIPT, 1, `${prefix}:secrets:seq`));
}

// ---- Failed-decryption limit --------------------------------------------------------------------

/** The peer's address. Proxies are not trusted: behind one, every client shares its address. */
function clientAddress(c: Context<AppEnv>): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    // app.request() in tests has no socket.
    return "unknown";
  }
}

const failureSlot = (prefix: string, address: string, pattern: string) =>
  `${prefix}:secrets:failed-decrypt:${createHash("sha256").update(`${address}\n${pattern}`).digest("base64url")}`;

// Each retrieval reserves one attempt before it reads or derives anything, so concurrent guesses
// cannot all pass one check made before any of them has failed. The count is failures plus
// retrievals in flight; the window starts with the first reservation of a slot that has none.
// Answers {count, remaining ms}.
const RESERVE_ATTEMPT_SCRIPT = `
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return {n, redis.call('PTTL', KEYS[1])}`;

// Gives a reservation back (a retrieval in which nothing failed to open, or one refused). Never
// below zero, never on a slot that has expired meanwhile (DECR would recreate it without expiry),
// and a slot back at zero is deleted: the next failure starts a window of its own.
const RELEASE_ATTEMPT_SCRIPT = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])`;

async function reserveAttempt(redis: Redis, slot: string, windowSeconds: number) {
  const [count, ttlMs] = (await redis.eval(RESERVE_ATTEMPT_SCRIPT, 1, slot, windowSeconds)) as [
    number,
    number,
  ];
  return { count: Number(count), ttlMs: Number(ttlMs) };
}

const releaseAttempt = (redis: Redis, slot: string) => redis.eval(RELEASE_ATTEMPT_SCRIPT, 1, slot);

// ---- Routes -------------------------------------------------------------------------------------

/** The store route takes a value up to SECRETS_MAX_VALUE_BYTES, beyond the app's general body limit. */
const storeBodyLimit: MiddlewareHandler<AppEnv> = (c, next) => {
  const { config } = c.get("deps");
  const maxSize = Math.max(config.BODY_LIMIT_BYTES, config.SECRETS_MAX_VALUE_BYTES + ENVELOPE_BYTES);
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new AppError("PAYLOAD_TOO_LARGE", `request body is larger than ${maxSize} bytes`);
    },
  })(c, next);
};

export const secretsRoutes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

secretsRoutes.on("POST", SECRETS_PATH, storeBodyLimit);

secretsRoutes
  .openapi(storeRoute, async (c) => {
    const { id, encryption_key: key, value } = c.req.valid("json");
    const { config, redis, queues } = c.get("deps");
    const text = JSON.stringify(value);
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > config.SECRETS_MAX_VALUE_BYTES)
      throw new AppError(
        "PAYLOAD_TOO_LARGE",
        `value is ${bytes} bytes as JSON; the limit is ${config.SECRETS_MAX_VALUE_BYTES}`,
      );
    const keys = secretsKeys(c.get("deps"));
    if (redis.status !== "ready") throw serviceUnavailable("Redis");
    const seq = await nextSecretSeq(redis, queues.prefix);
    const sealed = seal(
      keys.sealKey,
      JSON.stringify({ id, key, value: text, seq } satisfies SealedStore),
      storeSealContext(id),
    );
    // submitJob answers 202 or (Prefer: wait) 200 itself; its Response is not typed per route.
    return submitJob(c, {
      contract: encryptionQueue,
      name: "secrets.store",
      payload: { id, sealed },
      onCompleted: () => ({ id, stored: true }),
    }) as never;
  })
  .openapi(retrieveRoute, async (c) => {
    const body = c.req.valid("json");
    const key = (body.decryption_key ?? body.encryption_key) as string;
    const deps = c.get("deps");
    const { config, redis, queues, database } = deps;
    const log = c.get("log");
    const max = config.SECRETS_MAX_MATCHES;
    if (body.limit !== undefined && body.limit > max)
      throw new AppError("VALIDATION_FAILED", `limit must be at most ${max}`, [
        { path: "limit", message: `must be at most ${max}` },
      ]);
    const limit = body.limit ?? max;
    const keys = secretsKeys(deps);

    // The limit is a security control: without Redis it cannot be checked, so nothing is served.
    if (redis.status !== "ready") throw serviceUnavailable("Redis");
    const address = clientAddress(c);
    const slot = failureSlot(queues.prefix, address, body.id);
    const reserved = await reserveAttempt(redis, slot, config.SECRETS_FAILED_DECRYPT_WINDOW_SECONDS);
    if (reserved.count > config.SECRETS_FAILED_DECRYPT_LIMIT) {
      await releaseAttempt(redis, slot).catch((err: Error) =>
        log.warn({ err: { message: err.message } }, "secrets: could not give a refused attempt back"),
      );
      const retryAfter = Math.max(1, Math.ceil(reserved.ttlMs / 1000));
      log.warn(
        // failures: those counted before this retrieval (some may still be in flight).
        { address, pattern: body.id, failures: reserved.count - 1, retryAfter },
        "secrets retrieval refused: too many failed decryptions",
      );
      throw new AppError(
        "RATE_LIMITED",
        "too many failed decryptions for this id pattern from this address; retry later",
        undefined,
        retryAfter,
      );
    }

    // One failure per request, however many records it missed: a key that opens some records of
    // a mixed family is not a guess, and must not be locked out after one request. A retrieval in
    // which nothing failed to open (an error included) gives its reservation back.
    let failed = 0;
    try {
      const rows = await findSecrets(database.sql, { pattern: body.id, after: body.after, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      if (rows.length > limit && last) c.header("X-Next-After", encodeURIComponent(last.id));
      c.header("Content-Type", "application/json; charset=UTF-8");
      if (page.length === 0) return c.body("[]", 200) as never;

      const master = await keys.masterKey(key);
      const items: string[] = [];
      for (const row of page) {
        try {
          const text = decryptRecord(master, row.id, row.ciphertext).toString("utf8");
          // The plaintext is the JSON text the API serialised at store time (authenticated by
          // AES-GCM), so it is spliced in as is rather than parsed and serialised again.
          items.push(`{"id":${JSON.stringify(row.id)},"value":${text}}`);
        } catch (err) {
          if (!(err instanceof CryptoError)) throw err;
          failed++;
          log.warn({ secretId: row.id, reason: err.message }, "secret left out: the key does not open it");
        }
      }
      return c.body(`[${items.join(",")}]`, 200) as never;
    } finally {
      if (failed === 0)
        await releaseAttempt(redis, slot).catch((err: Error) =>
          log.warn({ err: { message: err.message } }, "secrets: could not give an attempt back"),
        );
    }
  });
