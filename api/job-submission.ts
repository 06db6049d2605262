// The job contract every submission shares: 202 + Location + {"job": …}, Idempotency-Key
// (same request, same key within 24 h → the first job, nothing new enqueued; another request under
// a used key → 422) and Prefer: wait=N (RFC 7240).
import { createHash, createHmac } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Job, JobsOptions, Queue } from "bullmq";
import type { Context, TypedResponse } from "hono";
import type { JSONParsed } from "hono/utils/types";
import type { Redis } from "ioredis";
import { tenantOf } from "../domains/identity/caller.js";
import type { AppEnv } from "../http/context.js";
import { AppError, serviceUnavailable } from "../lib/errors.js";
import { randomId } from "../lib/ids.js";
import { decodeKey, subKey } from "../lib/sealing.js";
import { enqueue, type JobName, type JobPayload, type QueueContract } from "../queues/contract.js";
import type { QueueName } from "../queues/names.js";

export const MAX_WAIT_SECONDS = 30;
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

export interface JobView {
  id: string;
  queue: QueueName;
  name: string;
  state: string;
  progress: unknown;
  attempts: number;
  result: unknown;
  failedReason: string | null;
  createdAt: string | null;
  processedAt: string | null;
  finishedAt: string | null;
}

const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);

/** `state`, when given, was read before `job` (see GET /v1/jobs/{queue}/{id}). */
export async function jobView(queue: QueueName, job: Job, state?: string): Promise<JobView> {
  return {
    id: job.id ?? "",
    queue,
    name: job.name,
    state: state === undefined || state === "unknown" ? await job.getState() : state,
    progress: job.progress ?? 0,
    attempts: job.attemptsMade,
    result: job.returnvalue ?? null,
    failedReason: job.failedReason || null,
    createdAt: iso(job.timestamp),
    processedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
  };
}

export const statusUrl = (queue: QueueName, id: string) => `/v1/jobs/${queue}/${encodeURIComponent(id)}`;

/** Parses `Prefer: wait=N` (among other preferences); undefined when absent. Capped at 30 s. */
export function preferWait(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const match = /(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i.exec(header);
  if (!match?.[1]) return undefined;
  return Math.min(Number(match[1]), MAX_WAIT_SECONDS);
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** A replay waits this long for the first request's job to appear, looking every REPLAY_POLL_MS. */
const REPLAY_WAIT_MS = 2_000;
const REPLAY_POLL_MS = 50;
/**
 * A claim older than this whose job does not exist is not still enqueueing (an enqueue is one
 * round trip, and a failed one gives the claim back): its job was enqueued and has been trimmed
 * since (removeOnComplete), and the replay answers with its id as it always did.
 */
const ENQUEUE_GRACE_MS = 10_000;
/** Claims tried when the key keeps being let go between our SET NX and our GET. */
const CLAIM_ATTEMPTS = 3;
/** HKDF purpose of the sub-key of JOB_SEAL_KEY that request fingerprints are HMACs under. */
const FINGERPRINT_PURPOSE = "conveyor/idempotency/fingerprint/v1";

// Deletes the claim only while it still holds this request's claim: a claim that expired and
// was taken by another request meanwhile is that request's.
const RELEASE_CLAIM_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** What a key's slot holds: the job of the request that claimed it, and that request's fingerprint. */
interface Claim {
  jobId: string;
  /** Undefined for a claim written before fingerprints were kept: it replays whatever the request. */
  fingerprint: string | undefined;
}

const encodeClaim = (claim: Claim) => JSON.stringify({ job: claim.jobId, fp: claim.fingerprint });

function decodeClaim(raw: string): Claim {
  // Claims of the previous release (kept 24 h) hold the job id alone.
  if (!raw.startsWith("{")) return { jobId: raw, fingerprint: undefined };
  const { job, fp } = JSON.parse(raw) as { job: string; fp?: string };
  return { jobId: job, fingerprint: fp };
}

/** JSON with every object's keys sorted, so that key order does not make two bodies differ. */
const canonicalJson = (value: unknown): string =>
  JSON.stringify(value ?? null, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );

/**
 * What tells a replay from another request under a used key: the method, the path and `material`
 * (the validated body). A body may hold a secret (a store's value and key), so the slot keeps an
 * HMAC of it under a sub-key of JOB_SEAL_KEY, which no one can test guesses against without the
 * key; plain SHA-256 only for a hand-built config without one (the API requires it).
 */
function requestFingerprint(c: Context<AppEnv>, material: unknown): string {
  const sealKey = c.get("deps").config.JOB_SEAL_KEY;
  const mac =
    sealKey === undefined
      ? createHash("sha256")
      : createHmac("sha256", subKey(decodeKey(sealKey), FINGERPRINT_PURPOSE));
  return mac.update(`${c.req.method} ${c.req.path}\n${canonicalJson(material)}`).digest("base64url");
}

/** The request's validated JSON body (zod's output), undefined for a route without one. */
const validatedBody = (c: Context<AppEnv>): unknown =>
  // Context<AppEnv> does not know the route's input; Hono keeps what its validator produced.
  (c.req as unknown as { valid(target: "json"): unknown }).valid("json");

const stillEnqueueing = () =>
  new AppError(
    "CONFLICT",
    "a request with this Idempotency-Key is still being enqueued (or its enqueue failed); retry shortly",
    undefined,
    1,
  );

const keyReused = () =>
  new AppError(
    "IDEMPOTENCY_KEY_REUSED",
    "this Idempotency-Key was already used with a different request; send a new key for a new request",
  );

/**
 * Gives the claim back, by value. Not awaited: a command that timed out may still run once Redis
 * answers, and this one, sent after it on the same connection, then runs after it.
 */
const releaseClaim = (redis: Redis, slot: string, claim: string) => {
  redis.eval(RELEASE_CLAIM_SCRIPT, 1, slot, claim).catch(() => {});
};

/** SET NX of our claim; true when it is ours. A SET that failed may still land: it is given back. */
async function claimKey(redis: Redis, slot: string, claim: string): Promise<boolean> {
  try {
    return (await redis.set(slot, claim, "EX", IDEMPOTENCY_TTL_SECONDS, "NX")) !== null;
  } catch (err) {
    releaseClaim(redis, slot, claim);
    throw err;
  }
}

/**
 * The job a claimed key stands for, once it exists: waits up to REPLAY_WAIT_MS for the request
 * that claimed the key to enqueue it, then answers 409; 422 when that request was another one.
 * Undefined when the claim has gone (its request failed to enqueue, or it expired): the caller
 * claims the key again.
 */
async function claimedJob(
  redis: Redis,
  queue: Queue,
  slot: string,
  fingerprint: string,
): Promise<{ id: string; job: Job | undefined } | undefined> {
  const deadline = Date.now() + REPLAY_WAIT_MS;
  for (;;) {
    const [raw, ttlMs] = await Promise.all([redis.get(slot), redis.pttl(slot)]);
    if (raw === null) return undefined;
    const claim = decodeClaim(raw);
    if (claim.fingerprint !== undefined && claim.fingerprint !== fingerprint) throw keyReused();
    const job = await queue.getJob(claim.jobId);
    if (job) return { id: claim.jobId, job };
    if (ttlMs >= 0 && IDEMPOTENCY_TTL_SECONDS * 1000 - ttlMs > ENQUEUE_GRACE_MS)
      return { id: claim.jobId, job: undefined };
    if (Date.now() >= deadline) throw stillEnqueueing();
    await sleep(REPLAY_POLL_MS);
  }
}

export interface SubmitOptions<C extends QueueContract, N extends JobName<C>, R extends object = JobView> {
  contract: C;
  name: N;
  payload: JobPayload<C, N>;
  jobOptions?: JobsOptions;
  /**
   * The body of the 200 answer when the client waited and the job completed in time. Built from
   * the job's view alone: a replay answers for the first request's job.
   */
  onCompleted?: (view: JobView) => R;
}

/** What c.json(body, status) answers (hono does not export its name for it). */
type JsonAnswer<T, S extends 200 | 202> = Response & TypedResponse<JSONParsed<T>, S, "json">;

/** A submission's answers, typed as the routes declare them (jobSubmissionResponses). */
export type SubmissionAnswer<R extends object = JobView> =
  | ReturnType<typeof accepted>
  | JsonAnswer<JobView, 200>
  | JsonAnswer<R, 200>;

/** The Redis key of a tenant's Idempotency-Key: per tenant, and hashed (clients put meaning in keys). */
export const idempotencySlot = (prefix: string, queue: QueueName, tenant: string, key: string) =>
  `${prefix}:idempotency:${queue}:${createHash("sha256").update(`${tenant}\n${key}`).digest("base64url")}`;

/** Enqueues one job under the platform's job contract and answers for it. */
export async function submitJob<C extends QueueContract, N extends JobName<C>, R extends object = JobView>(
  c: Context<AppEnv>,
  opts: SubmitOptions<C, N, R>,
  // R comes from onCompleted only, never from what the route declares it may answer.
): Promise<SubmissionAnswer<NoInfer<R>>> {
  const { redis, queues } = c.get("deps");
  if (redis.status !== "ready") throw serviceUnavailable("Redis");
  const queueName = opts.contract.name;
  const queue = queues.get(queueName);
  const tenant = tenantOf(c.get("caller"));
  const owners = [tenant];

  let job: Job | undefined;
  const idempotencyKey = c.req.header("Idempotency-Key");
  if (idempotencyKey !== undefined) {
    if (!IDEMPOTENCY_KEY.test(idempotencyKey))
      throw new AppError("BAD_REQUEST", "Idempotency-Key must be 1-255 visible ASCII characters");
    const slot = idempotencySlot(queues.prefix, queueName, tenant, idempotencyKey);
    const fingerprint = requestFingerprint(c, validatedBody(c));
    const jobId = randomId();
    const claim = encodeClaim({ jobId, fingerprint });
    // Enqueue only under a claim of our own; otherwise answer for the job of the request that has it.
    for (let attempt = 1; ; attempt++) {
      if (await claimKey(redis, slot, claim)) break;
      const first = await claimedJob(redis, queue, slot, fingerprint);
      if (first) {
        c.header("Idempotent-Replayed", "true");
        return answer(c, queueName, first.id, first.job, opts);
      }
      if (attempt >= CLAIM_ATTEMPTS) throw stillEnqueueing();
    }
    try {
      job = await enqueue(
        queue,
        opts.contract,
        opts.name,
        opts.payload,
        { ...opts.jobOptions, jobId },
        owners,
      );
    } catch (err) {
      // Release the key: nothing was enqueued under it, so a retry must be able to enqueue.
      releaseClaim(redis, slot, claim);
      throw err;
    }
  } else {
    job = await enqueue(queue, opts.contract, opts.name, opts.payload, opts.jobOptions, owners);
  }
  return answer(c, queueName, job.id ?? "", job, opts);
}

async function answer<R extends object>(
  c: Context<AppEnv>,
  queueName: QueueName,
  id: string,
  job: Job | undefined,
  opts: { onCompleted?: (view: JobView) => R },
): Promise<SubmissionAnswer<R>> {
  const wait = preferWait(c.req.header("Prefer"));
  if (wait !== undefined && job) {
    const finished = await waitForJob(c, queueName, job, wait);
    if (finished) {
      c.header("Preference-Applied", `wait=${wait}`);
      const view = await jobView(queueName, finished);
      c.header("Content-Location", statusUrl(queueName, id));
      if (view.state === "completed" && opts.onCompleted) return c.json(opts.onCompleted(view), 200);
      return c.json(view, 200);
    }
  }
  return accepted(c, queueName, id);
}

/** The 202 of a submission: `Location` and a body naming the job. */
export function accepted(c: Context<AppEnv>, queue: QueueName, id: string) {
  const url = statusUrl(queue, id);
  c.header("Location", url);
  return c.json({ job: { queue, id, statusUrl: url } }, 202);
}

/** The job once it has completed or failed within `seconds`, else undefined. */
async function waitForJob(c: Context<AppEnv>, queueName: QueueName, job: Job, seconds: number) {
  if (seconds <= 0) return undefined;
  const { queues } = c.get("deps");
  const events = await queues.events(queueName);
  try {
    await job.waitUntilFinished(events, seconds * 1000);
  } catch (err) {
    // A failed job rejects too; only a timeout means "not finished yet".
    if (err instanceof Error && /timed out/i.test(err.message)) return undefined;
  }
  const fresh = await queues.get(queueName).getJob(job.id ?? "");
  if (!fresh) return undefined;
  const state = await fresh.getState();
  return state === "completed" || state === "failed" ? fresh : undefined;
}
