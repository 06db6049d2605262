// The usage domain: API clients log their hits, and see who called what and how much. Hits go
// into `log-batching` jobs many at a time (the API's group commit, as alert events do), a worker
// commits them with their daily and hourly rollups in one statement (group commit across jobs),
// then adds what it counted to the live counters in Redis and announces the batch on pub/sub.
// Postgres is the system of record: the counters are rebuilt from it by the maintenance job.
import { createDatabase } from "../../db/client.js";
import { createBatcher } from "../../lib/batcher.js";
import { AppError, isDependencyDown, isInvalidData, RETRY_AFTER_SECONDS } from "../../lib/errors.js";
import { randomId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { createRateLimit, type RateLimitState } from "../../lib/rate-limit.js";
import { enqueue, JOB_OWNERS_FIELD } from "../../queues/contract.js";
import { type LoggedHit, logBatchingQueue, USAGE_HITS_PER_JOB } from "../../queues/log-batching.js";
import type { Connections } from "../connections.js";
import type { IdentityService } from "../identity/service.js";
import type { NotificationsService } from "../notifications/service.js";
import { createClientLimits, type LimitKind } from "./client-limits.js";
import type { UsageConfig } from "./config.js";
import { createUsageEvents } from "./events.js";
import {
  type ClientSettings,
  type CountedHits,
  createDayPartitions,
  dailyUsage,
  dropDayPartitionsBefore,
  findUsageClient,
  hourlyTotalsSince,
  insertHits,
  insertUsageClient,
  listUsageClients,
  NO_PARTITION,
  updateUsageClient,
  utcDay,
} from "./queries.js";
import { type CachedAnswer, createReadCache } from "./read-cache.js";
import { createHitSpool } from "./spool.js";

const HOUR_MS = 3_600_000;
/** How long an answer read from DATABASE_READ_URL stays cached. */
const REPLICA_ANSWER_TTL_SECONDS = 5;
/** How often a process with a spool looks for hits to replay (while Redis answers). */
const SPOOL_REPLAY_EVERY_MS = 1_000;
const DAY_MS = 86_400_000;
/** Windows of clients warned of their quota that a process remembers, before it forgets ended ones. */
const QUOTA_WARNED_MAX = 10_000;
/** Hours in the rolling window of /api/usage/top: this hour and the 23 before it. */
export const TOP_WINDOW_HOURS = 24;
export const TOP_CLIENTS = 3;
/** Days of /api/usage/daily. */
export const DAILY_DAYS = 7;

/** A hit as a client logs it. */
export interface HitInput {
  ip: string;
  endpoint: string;
  /** Epoch ms; the time it was received when absent. */
  at?: number | undefined;
  method?: string | undefined;
  status?: number | undefined;
}

export interface TopClient {
  clientId: string;
  requests: number;
}

const rankTop = (totals: TopClient[]): TopClient[] =>
  totals.sort((a, b) => b.requests - a.requests || (a.clientId < b.clientId ? -1 : 1)).slice(0, TOP_CLIENTS);

export type UsageService = ReturnType<typeof createUsageService>;

export function createUsageService(
  config: UsageConfig & { QUEUE_PREFIX: string; REDIS_URL: string },
  { database, redis, queues, logger }: Pick<Connections, "database" | "redis" | "queues" | "logger">,
  { identity, notifications }: { identity: IdentityService; notifications?: NotificationsService },
) {
  const sql = database.sql;
  // The usage reads go to the read replica when there is one.
  const replica =
    config.DATABASE_READ_URL === undefined
      ? undefined
      : createDatabase(config.DATABASE_READ_URL, { max: 5, appName: "conveyor-usage-reads" });
  const readSql = replica?.sql ?? sql;
  // From a replica, an answer computed just after a commit may not hold it yet (replication lag):
  // it is kept seconds, not an hour, so the lag bounds how stale a read can be.
  const cache = createReadCache({
    redis,
    keyPrefix: `${config.QUEUE_PREFIX}:usage`,
    ttlSeconds: replica ? REPLICA_ANSWER_TTL_SECONDS : undefined,
  });
  const keyPrefix = `${config.QUEUE_PREFIX}:usage`;
  const hourKey = (hourMs: number) => `${keyPrefix}:hour:${hourMs}`;
  const events = createUsageEvents({
    redis,
    redisUrl: config.REDIS_URL,
    keyPrefix,
    logger,
    onSettingsChanged: (accountId) => limits.forget(accountId),
  });
  const limits = createClientLimits({
    redis,
    sql,
    keyPrefix,
    config,
    listen: () => void events.listen().catch(() => {}),
  });

  // ---- The API: hits into jobs ----------------------------------------------------------------
  // A request is the unit: its hits go into one job, and the jobs of one flush are added at once
  // (addBulk is atomic), so a request is accepted whole or refused whole; a client retrying a
  // refused request can never have part of it counted twice.
  let queuedHits = 0;
  const enqueuer = createBatcher<LoggedHit[]>({
    maxBatch: 256,
    maxInFlight: 4,
    flush: async (requests) => {
      const jobs: LoggedHit[][] = [];
      for (const hits of requests) {
        const last = jobs.at(-1);
        if (last && last.length + hits.length <= USAGE_HITS_PER_JOB) last.push(...hits);
        else jobs.push([...hits]);
      }
      await queues.get(logBatchingQueue.name).addBulk(
        jobs.map((hits) => ({
          name: "usage.logHits",
          data: {
            ...logBatchingQueue.jobs["usage.logHits"].parse({ hits }),
            [JOB_OWNERS_FIELD]: [...new Set(hits.map((h) => h.accountId))],
          },
          opts: { ...logBatchingQueue.defaultJobOptions, jobId: randomId() },
        })),
      );
    },
  });

  /** Adds one request's hits to a shared job; SERVICE_UNAVAILABLE when too many already wait. */
  async function enqueueRequest(hits: LoggedHit[]): Promise<void> {
    if (queuedHits + hits.length > config.USAGE_MAX_QUEUED_HITS)
      throw new AppError(
        "SERVICE_UNAVAILABLE",
        "too many hits are waiting for Redis; retry later",
        undefined,
        RETRY_AFTER_SECONDS,
      );
    queuedHits += hits.length;
    try {
      await enqueuer.add(hits);
    } finally {
      queuedHits -= hits.length;
    }
  }

  const registrations = createRateLimit(redis, {
    keyPrefix: `${keyPrefix}:registrations`,
    points: config.USAGE_REGISTRATIONS_PER_ADDRESS_PER_HOUR,
    windowSeconds: 3_600,
    message: "too many registrations from this address; retry later",
    whenRedisIsDown: "memory",
  });

  /** Tells a client it went past a limit, once per window (a Redis key stands for the window). */
  async function notifyRateLimited(kind: LimitKind, accountId: string, windowLeftSeconds: number) {
    if (!notifications) return;
    const first = await redis.set(
      `${keyPrefix}:limited:${kind}:${accountId}`,
      "1",
      "EX",
      windowLeftSeconds,
      "NX",
    );
    if (first !== "OK") return;
    await sql.begin((tx) =>
      notifications.notify(tx, {
        account: accountId,
        type: "usage.rate_limited",
        data: { kind, retryAfterSeconds: windowLeftSeconds },
      }),
    );
  }

  /**
   * Tells a client it has used USAGE_QUOTA_WARNING_PERCENT of an hourly limit, once per window:
   * this process remembers the windows it has seen warned, so a client near its quota costs no
   * Redis call per request; the Redis key settles it between processes.
   */
  const quotaWarned = new Map<string, number>();
  async function warnQuota(kind: LimitKind, accountId: string, hour: RateLimitState) {
    const used = hour.limit - hour.remaining;
    if (!notifications || config.USAGE_QUOTA_WARNING_PERCENT >= 100) return;
    if (used * 100 < hour.limit * config.USAGE_QUOTA_WARNING_PERCENT) return;
    const now = Date.now();
    const windowKey = `${kind}:${accountId}`;
    if ((quotaWarned.get(windowKey) ?? 0) > now) return;
    if (quotaWarned.size >= QUOTA_WARNED_MAX)
      for (const [key, until] of quotaWarned) if (until <= now) quotaWarned.delete(key);
    quotaWarned.set(windowKey, now + hour.resetSeconds * 1000);
    const first = await redis.set(
      `${keyPrefix}:quota-warned:${kind}:${accountId}`,
      "1",
      "EX",
      Math.max(1, hour.resetSeconds),
      "NX",
    );
    if (first !== "OK") return;
    await sql.begin((tx) =>
      notifications.notify(tx, {
        account: accountId,
        type: "usage.quota_warning",
        data: { kind, used, limit: hour.limit, resetSeconds: hour.resetSeconds },
      }),
    );
  }

  // ---- The spool: hits acknowledged while Redis was down, replayed once it is back -------------
  const spool =
    config.USAGE_SPOOL_DIR === undefined
      ? undefined
      : createHitSpool({ dir: config.USAGE_SPOOL_DIR, logger });
  let replaying = false;
  const replayTimer = spool
    ? setInterval(() => {
        if (replaying || redis.status !== "ready") return;
        replaying = true;
        spool
          .replay((hits) =>
            enqueue(queues.get(logBatchingQueue.name), logBatchingQueue, "usage.logHits", { hits }, {}, [
              ...new Set(hits.map((h) => h.accountId)),
            ]).then(() => undefined),
          )
          .catch((err: unknown) =>
            logger.warn({ err: { message: (err as Error).message } }, "usage spool: replay failed; retrying"),
          )
          .finally(() => {
            replaying = false;
          });
      }, SPOOL_REPLAY_EVERY_MS)
    : undefined;
  replayTimer?.unref();

  // ---- The worker: hits into Postgres, then the live counters --------------------------------
  async function commit(hits: LoggedHit[]): Promise<CountedHits[]> {
    try {
      return await insertWithPartitions(hits);
    } catch (err) {
      if (!isInvalidData(err) || hits.length === 1) throw err;
      // One hit Postgres refuses must not sink the others sharing its statement (other jobs',
      // other clients'): write them one at a time, and drop only what is refused, logged.
      const counted: CountedHits[] = [];
      for (const hit of hits) {
        try {
          counted.push(...(await insertWithPartitions([hit])));
        } catch (hitErr) {
          if (!isInvalidData(hitErr)) throw hitErr;
          logger.error(
            { hitId: hit.id, accountId: hit.accountId, err: { message: (hitErr as Error).message } },
            "usage: a hit Postgres refuses was dropped",
          );
        }
      }
      return counted;
    }
  }

  async function insertWithPartitions(hits: LoggedHit[]): Promise<CountedHits[]> {
    try {
      return await insertHits(sql, hits);
    } catch (err) {
      if ((err as { code?: string }).code !== NO_PARTITION) throw err;
      // A day with no partition yet (the maintenance job makes them ahead; a hit from the edge
      // of the retention window may still find none): make it, and write again.
      await createDayPartitions(
        sql,
        hits.map((h) => utcDay(h.at)),
      );
      return insertHits(sql, hits);
    }
  }

  const committer = createBatcher<LoggedHit>({
    maxBatch: config.USAGE_BATCH_MAX,
    flush: async (hits) => {
      const counted = await commit(hits);
      if (counted.length === 0) return;
      // After the commit: a crash here leaves the counters short until the next rebuild, never
      // double (a retried batch inserts nothing, so counts nothing).
      await addToCounters(counted).catch((err: unknown) =>
        logger.warn({ err: { message: (err as Error).message } }, "usage: live counters not updated"),
      );
      warmSoon();
    },
  });

  async function addToCounters(counted: CountedHits[]): Promise<void> {
    const pipeline = redis.pipeline();
    // Every cached answer that counted these clients is stale now.
    for (const key of cache.versionKeys(new Set([...counted.map((c) => c.accountId), "all"])))
      pipeline.incr(key);
    for (const c of counted) {
      pipeline.zincrby(hourKey(c.hour), c.hits, c.clientId);
      // Kept for the window, and an hour more for the hour under way.
      pipeline.pexpireat(hourKey(c.hour), c.hour + (TOP_WINDOW_HOURS + 1) * HOUR_MS);
    }
    events.announce(pipeline, counted);
    await pipeline.exec();
  }

  // The hot answer (every client's daily usage, what admins read) computed again after commits,
  // at most once a second, so the first read after a batch finds it ready.
  let warmTimer: NodeJS.Timeout | undefined;
  function warmSoon(): void {
    if (warmTimer) return;
    warmTimer = setTimeout(() => {
      warmTimer = undefined;
      daily(undefined).catch((err: unknown) =>
        logger.debug({ err: { message: (err as Error).message } }, "usage: could not warm the daily answer"),
      );
    }, 1_000);
    warmTimer.unref();
  }

  const daily = (accountId: string | undefined) => {
    const todayMs = utcDay(Date.now());
    return cache.read(`daily:${new Date(todayMs).toISOString().slice(0, 10)}`, accountId ?? "all", () =>
      dailyUsage(readSql, { accountId, days: DAILY_DAYS, todayMs }),
    );
  };

  /** The top clients from the hourly rollup (when the live counters are out of reach). */
  async function topFromDatabase(since: number) {
    const totals = new Map<string, number>();
    for (const t of await hourlyTotalsSince(readSql, since))
      totals.set(t.clientId, (totals.get(t.clientId) ?? 0) + t.hits);
    return rankTop([...totals].map(([clientId, requests]) => ({ clientId, requests })));
  }

  return {
    /**
     * Registers a usage client: an account of role `client` with its first API key, and its
     * usage row, in one transaction. `clientId` defaults to the account id.
     */
    async register(input: {
      name: string;
      email: string;
      clientId?: string | undefined;
      /** The caller's address, when it comes over HTTP: registrations are limited per address. */
      address?: string | undefined;
    }) {
      if (input.address !== undefined) await registrations.consume(input.address);
      try {
        const made = await identity.createAccount(
          { accountId: null, keyId: null, requestId: null },
          {
            role: "client",
            name: input.name,
            email: input.email,
            withKey: { name: "registration" },
            alongside: (tx, account) =>
              insertUsageClient(tx, { accountId: account.id, clientId: input.clientId ?? account.id }),
          },
        );
        // Every client's answer lists every client: a new one makes it stale.
        await cache
          .invalidate(["all"])
          .catch((err: unknown) =>
            logger.warn(
              { err: { message: (err as Error).message } },
              "usage: the all-clients answer stays cached",
            ),
          );
        return {
          accountId: made.account.id,
          clientId: input.clientId ?? made.account.id,
          name: made.account.name,
          email: made.account.email as string,
          apiKey: made.secret as string,
        };
      } catch (err) {
        if ((err as { constraint_name?: string }).constraint_name === "usage_clients_client_id_key")
          throw new AppError("CONFLICT", `client_id ${input.clientId} is taken`);
        throw err;
      }
    },

    client: (accountId: string) => findUsageClient(sql, { accountId }),
    clientById: (clientId: string) => findUsageClient(sql, { clientId }),

    /** A client's settings as the API shows them: its allowlist and its effective limits. */
    view: limits.view,

    /** Usage clients by client_id, a page at a time. */
    async listClients(page: { after?: string | undefined; limit: number }) {
      const rows = await listUsageClients(sql, { ...page, limit: page.limit + 1 });
      const items = rows.slice(0, page.limit);
      return {
        items: items.map(limits.view),
        nextAfter: rows.length > page.limit ? (items.at(-1)?.clientId ?? null) : null,
      };
    },

    /** Changes a client's allowlist or limits; every API process applies it at once. */
    async updateClient(accountId: string, change: ClientSettings) {
      const row = await updateUsageClient(sql, accountId, change);
      if (!row) throw new AppError("NOT_FOUND", "no such client");
      limits.forget(accountId);
      await events
        .settingsChanged(accountId)
        .catch((err: unknown) =>
          logger.warn(
            { err: { message: (err as Error).message } },
            "usage: settings change not announced; other API processes apply it within a minute",
          ),
        );
      return limits.view(row);
    },

    /**
     * A client's request admitted (its allowlist, then its windows of `kind`); past a limit the
     * client is also notified, once per window (`usage.rate_limited`), and near its hourly limit
     * warned, once per window (`usage.quota_warning`).
     */
    async admit(kind: LimitKind, accountId: string, address: string, points = 1) {
      try {
        const admitted = await limits.admit(kind, accountId, address, points);
        void warnQuota(kind, accountId, admitted.hour).catch((notifyErr: unknown) =>
          logger.warn(
            { err: { message: (notifyErr as Error).message } },
            "usage: the client was not warned of its quota",
          ),
        );
        return admitted;
      } catch (err) {
        if (err instanceof AppError && err.code === "RATE_LIMITED")
          void notifyRateLimited(kind, accountId, err.retryAfter ?? 60).catch((notifyErr: unknown) =>
            logger.warn(
              { err: { message: (notifyErr as Error).message } },
              "usage: the client was not notified of its rate limit",
            ),
          );
        throw err;
      }
    },
    minuteWindow: limits.minuteWindow,

    /**
     * Logs a client's hits: resolves once every one of them is durable, in a job in Redis or, while
     * Redis cannot take them, in the spool on disk (`spooled` counts those).
     */
    async logHits(
      accountId: string,
      hits: readonly HitInput[],
    ): Promise<{ accepted: number; spooled: number }> {
      const now = Date.now();
      const logged: LoggedHit[] = hits.map((h) => ({
        id: randomId(),
        accountId,
        at: h.at ?? now,
        ip: h.ip,
        endpoint: h.endpoint,
        method: h.method,
        status: h.status,
      }));
      try {
        await enqueueRequest(logged);
        return { accepted: hits.length, spooled: 0 };
      } catch (err) {
        const unavailable =
          isDependencyDown(err) || (err instanceof AppError && err.code === "SERVICE_UNAVAILABLE");
        if (!spool || !unavailable) throw err;
        // Redis cannot take them: the whole request goes to the spool instead.
        await spool.append(logged);
        return { accepted: hits.length, spooled: hits.length };
      }
    },

    /** Hits this process acknowledged into its spool and has not replayed yet. */
    spooledHits: () => spool?.pending() ?? 0,

    /** Computes the hot answer (every client's week) again within a second (a worker's start). */
    warmSoon,

    /** Commits a job's hits with those of concurrent jobs (worker). */
    async record(hits: readonly LoggedHit[]): Promise<void> {
      await Promise.all(hits.map((h) => committer.add(h)));
    },

    /**
     * Requests per UTC day for the last DAILY_DAYS days, zero-filled: one client's, or all;
     * cached (read-cache.ts), with where the answer came from.
     */
    daily: (accountId?: string) => daily(accountId),

    /**
     * The TOP_CLIENTS clients with the most requests in this hour and the 23 before it: from the
     * live counters in Redis, no database call; from the hourly rollup while Redis is down.
     */
    async top(): Promise<CachedAnswer<TopClient[]>> {
      const thisHour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
      const keys = Array.from({ length: TOP_WINDOW_HOURS }, (_, i) => hourKey(thisHour - i * HOUR_MS));
      let flat: string[];
      try {
        flat = (await redis.call("ZUNION", String(keys.length), ...keys, "WITHSCORES")) as string[];
      } catch (err) {
        if (!isDependencyDown(err) && redis.status === "ready") throw err;
        const since = thisHour - (TOP_WINDOW_HOURS - 1) * HOUR_MS;
        return cache.read(`top:${thisHour}`, "all", () => topFromDatabase(since));
      }
      const totals: TopClient[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2)
        totals.push({ clientId: flat[i] as string, requests: Number(flat[i + 1]) });
      return { value: rankTop(totals), source: "cache" };
    },

    /**
     * The scheduled upkeep: partitions for today and USAGE_PARTITIONS_AHEAD_DAYS ahead (and the
     * retention window behind, for late hits), drops those past USAGE_RETENTION_DAYS, and rebuilds
     * the live counters of the window from the hourly rollup.
     */
    async maintain(log: Logger) {
      const today = utcDay(Date.now());
      const days: number[] = [];
      for (let d = -config.USAGE_RETENTION_DAYS + 1; d <= config.USAGE_PARTITIONS_AHEAD_DAYS; d++)
        days.push(today + d * DAY_MS);
      const created = await createDayPartitions(sql, days);
      const dropped = await dropDayPartitionsBefore(sql, today - (config.USAGE_RETENTION_DAYS - 1) * DAY_MS);
      const thisHour = Math.floor(Date.now() / HOUR_MS) * HOUR_MS;
      const since = thisHour - (TOP_WINDOW_HOURS - 1) * HOUR_MS;
      const totals = await hourlyTotalsSince(sql, since);
      const pipeline = redis.multi();
      for (let h = since; h <= thisHour; h += HOUR_MS) pipeline.del(hourKey(h));
      for (const t of totals) {
        pipeline.zadd(hourKey(t.hour), t.hits, t.clientId);
        pipeline.pexpireat(hourKey(t.hour), t.hour + (TOP_WINDOW_HOURS + 1) * HOUR_MS);
      }
      await pipeline.exec();
      log.info({ created, dropped, hours: totals.length }, "usage partitions and counters maintained");
      return { created, dropped };
    },

    subscribe: events.subscribe,
    eventsAfter: events.eventsAfter,

    async close(): Promise<void> {
      clearTimeout(warmTimer);
      clearInterval(replayTimer);
      await spool?.close();
      await Promise.allSettled([enqueuer.drain(), committer.drain()]);
      await replica?.close();
      await events.close();
    },
  };
}
