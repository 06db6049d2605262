// A usage client's admission: its IP allowlist, and its rate limits, a minute and an hour, on
// reads and on hits apart (its own, or the configured defaults). Each process remembers a client's
// settings for a minute at most; a change is announced, and every process forgets its copy at once.
import type { Redis } from "ioredis";
import { LRUCache } from "lru-cache";
import type { Sql } from "../../db/client.js";
import { type AddressList, addressList } from "../../lib/cidr.js";
import { AppError } from "../../lib/errors.js";
import { createRateLimit, type RateLimit, type RateLimitState } from "../../lib/rate-limit.js";
import type { UsageConfig } from "./config.js";
import { findUsageClient, type UsageClientRow } from "./queries.js";

/** The two families of per-client limits. */
export type LimitKind = "reads" | "hits";

/** A client's settings as the API shows them: its allowlist and its effective limits. */
export interface ClientView {
  accountId: string;
  clientId: string;
  ipAllowlist: string[];
  limits: Record<LimitKind, { limit: number; windowSeconds: number }[]>;
  createdAt: string;
}

interface KnownClient {
  row: UsageClientRow | undefined;
  /** Its allowlist, ready to check; undefined: from anywhere. */
  allowed: AddressList | undefined;
}

export type ClientLimits = ReturnType<typeof createClientLimits>;

export function createClientLimits(opts: {
  redis: Redis;
  sql: Sql;
  keyPrefix: string;
  config: UsageConfig;
  /** Called before settings are first remembered: so this process hears of their changes. */
  listen: () => void;
}) {
  const { redis, sql, keyPrefix, config } = opts;
  const settings = new LRUCache<string, KnownClient>({ max: 10_000, ttl: 60_000 });

  async function known(accountId: string): Promise<KnownClient> {
    opts.listen();
    const remembered = settings.get(accountId);
    if (remembered) return remembered;
    const row = await findUsageClient(sql, { accountId });
    const client = {
      row,
      allowed: row && row.ipAllowlist.length > 0 ? addressList(row.ipAllowlist) : undefined,
    };
    settings.set(accountId, client);
    return client;
  }

  // One limiter per window and number of points: limiters of one window share its counters in
  // Redis, so a client whose limit changes keeps its count.
  const limiters = new Map<string, RateLimit>();
  function limiter(kind: LimitKind, windowSeconds: number, points: number): RateLimit {
    const id = `${kind}:${windowSeconds}:${points}`;
    let found = limiters.get(id);
    if (!found) {
      found = createRateLimit(redis, {
        keyPrefix: `${keyPrefix}:limit:${kind}:${windowSeconds}`,
        points,
        windowSeconds,
        message:
          kind === "hits"
            ? "this client has logged too many hits; retry later"
            : "this client has made too many requests; retry later",
        whenRedisIsDown: "memory",
      });
      limiters.set(id, found);
    }
    return found;
  }

  /** A client's windows of `kind`: its own limits, or the configured defaults. */
  const windowsOf = (kind: LimitKind, client: UsageClientRow | undefined) =>
    kind === "reads"
      ? [
          limiter(kind, 60, client?.readsPerMinute ?? config.USAGE_READS_PER_MINUTE),
          limiter(kind, 3600, client?.readsPerHour ?? config.USAGE_READS_PER_HOUR),
        ]
      : [
          limiter(kind, 60, client?.hitsPerMinute ?? config.USAGE_HITS_PER_MINUTE),
          limiter(kind, 3600, client?.hitsPerHour ?? config.USAGE_HITS_PER_HOUR),
        ];
  const policy = (kind: LimitKind, row: UsageClientRow | undefined) =>
    windowsOf(kind, row).map((w) => ({ limit: w.points, windowSeconds: w.windowSeconds }));

  return {
    view: (row: UsageClientRow): ClientView => ({
      accountId: row.accountId,
      clientId: row.clientId,
      ipAllowlist: row.ipAllowlist,
      limits: { reads: policy("reads", row), hits: policy("hits", row) },
      createdAt: row.createdAt.toISOString(),
    }),

    /** Forgets what this process remembers of a client (its settings changed). */
    forget: (accountId: string) => void settings.delete(accountId),

    /**
     * Whether a client's request from `address` may go on: its IP allowlist (empty: anywhere).
     * FORBIDDEN otherwise. Then takes `points` from the client's windows of `kind`: RATE_LIMITED
     * past either. Answers the window closest to its limit, for the RateLimit headers, and the
     * hour's window (the quota).
     */
    async admit(
      kind: LimitKind,
      accountId: string,
      address: string,
      points = 1,
    ): Promise<RateLimitState & { windowSeconds: number; hour: RateLimitState }> {
      const client = await known(accountId);
      if (client.allowed && !client.allowed.contains(address))
        throw new AppError("FORBIDDEN", "this client may not call from this address (its IP allowlist)");
      // Both windows at once: one round trip's wait, not two, on the hot path.
      const windows = windowsOf(kind, client.row);
      const outcomes = await Promise.allSettled(windows.map((window) => window.consume(accountId, points)));
      const refused = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
      if (refused) {
        // What the other window took is given back: a refused request must not use up the hour
        // (a client retrying past its minute limit would otherwise empty it with nothing accepted).
        await Promise.allSettled(
          windows.map((window, i) =>
            outcomes[i]?.status === "fulfilled" ? window.reward(accountId, points) : undefined,
          ),
        );
        throw refused.reason;
      }
      const states = outcomes.map((o, i) => ({
        ...(o as PromiseFulfilledResult<RateLimitState>).value,
        windowSeconds: (windows[i] as RateLimit).windowSeconds,
      }));
      const closest = states.reduce((a, b) => (b.remaining / b.limit < a.remaining / a.limit ? b : a));
      const hour = states.find((w) => w.windowSeconds === 3600) ?? closest;
      return { ...closest, hour };
    },

    /** The client's minute window of `kind`, for the headers of a refusal. */
    async minuteWindow(kind: LimitKind, accountId: string) {
      const [minute] = policy(kind, (await known(accountId)).row);
      return minute ?? { limit: 0, windowSeconds: 60 };
    },
  };
}
