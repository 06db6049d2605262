// What the usage domain announces over Redis, and who listens: every committed batch (kept in an
// event log, a Redis stream, for streams to resume from, and published for those live), and
// every change of a client's settings (so each API process forgets its copy at once). One
// subscriber connection per process, opened on first use, fans both out.
import type { ChainableCommander, Redis } from "ioredis";
import type { Logger } from "../../lib/logger.js";
import { createRedis } from "../../lib/redis.js";
import type { CountedHits } from "./queries.js";

/**
 * A committed batch, as announced on `<prefix>:usage:committed` and kept in the event log under
 * `id`.
 */
export interface CommittedBatchEvent {
  /** The event log's id (a Redis stream id, "ms-seq"): ordered, unique. */
  id: string;
  counted: CountedHits[];
}

/** Batches kept in the event log for resuming streams (Last-Event-ID). */
const EVENTS_KEPT = 10_000;

// KEYS: event log, channel. ARGV: max kept, the batch's JSON → the event's id. Logged and
// announced in one step, so an event seen live can always be found again by its id.
const ANNOUNCE = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'counted', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. ' ' .. ARGV[2])
return id`;

/** Orders two stream ids ("ms-seq"). */
export const compareEventIds = (a: string, b: string): number => {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am - bm || as - bs;
};

const parseAnnouncement = (message: string): CommittedBatchEvent | undefined => {
  const space = message.indexOf(" ");
  try {
    return { id: message.slice(0, space), counted: JSON.parse(message.slice(space + 1)) as CountedHits[] };
  } catch {
    return undefined;
  }
};

export type UsageEvents = ReturnType<typeof createUsageEvents>;

export function createUsageEvents(opts: {
  redis: Redis;
  redisUrl: string;
  keyPrefix: string;
  logger: Logger;
  /** Called when any process changes a client's settings. */
  onSettingsChanged: (accountId: string) => void;
}) {
  const { redis, keyPrefix, logger } = opts;
  const batches = `${keyPrefix}:committed`;
  const eventLog = `${keyPrefix}:events`;
  const settingsChanged = `${keyPrefix}:client-settings`;
  const listeners = new Set<(event: CommittedBatchEvent) => void>();
  let subscriber: Redis | undefined;

  function listen(): Promise<void> {
    if (subscriber) return Promise.resolve();
    subscriber = createRedis(opts.redisUrl, "worker", logger, { connectionName: "usage-events" });
    subscriber.on("message", (channel: string, message: string) => {
      if (channel === settingsChanged) return void opts.onSettingsChanged(message);
      const event = parseAnnouncement(message);
      if (event) for (const listener of listeners) listener(event);
    });
    return subscriber.subscribe(batches, settingsChanged).then(() => undefined);
  }

  return {
    /** Starts listening, if this process does not yet (settings changes included). */
    listen,

    /** Adds the announcement of a committed batch to `pipeline` (logged and published at once). */
    announce(pipeline: ChainableCommander, counted: CountedHits[]): void {
      pipeline.eval(ANNOUNCE, 2, eventLog, batches, String(EVENTS_KEPT), JSON.stringify(counted));
    },

    /** Tells every process that a client's settings changed. */
    async settingsChanged(accountId: string): Promise<void> {
      await redis.publish(settingsChanged, accountId);
    },

    /**
     * Calls `listener` with every batch committed from now on (any replica's workers); returns
     * the unsubscribe. Resolves once this process listens.
     */
    async subscribe(listener: (event: CommittedBatchEvent) => void): Promise<() => void> {
      listeners.add(listener);
      await listen();
      return () => listeners.delete(listener);
    },

    /** Every batch committed after event `afterId` still in the event log, oldest first. */
    async eventsAfter(afterId: string): Promise<CommittedBatchEvent[]> {
      const events: CommittedBatchEvent[] = [];
      let from = afterId;
      for (;;) {
        const page = (await redis.xrange(eventLog, `(${from}`, "+", "COUNT", 1_000)) as [string, string[]][];
        for (const [id, fields] of page) {
          const event = parseAnnouncement(`${id} ${fields[1] ?? "[]"}`);
          if (event) events.push(event);
        }
        const last = page.at(-1)?.[0];
        if (page.length < 1_000 || last === undefined) return events;
        from = last;
      }
    },

    async close(): Promise<void> {
      listeners.clear();
      if (subscriber) await subscriber.quit().catch(() => subscriber?.disconnect());
    },
  };
}
