// The producer side of every queue: one Queue per contract over a shared fail-fast
// connection, and QueueEvents (a blocking reader each) created only when a caller waits.
import { type Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "../lib/logger.js";
import { createRedis } from "../lib/redis.js";
import { createQueue } from "./contract.js";
import { QUEUE_NAMES, type QueueName, queueContracts } from "./index.js";

export interface QueueRegistry {
  readonly prefix: string;
  readonly names: readonly QueueName[];
  get(name: QueueName): Queue;
  /** The QueueEvents stream of a queue, opened on first use (Prefer: wait). */
  events(name: QueueName): Promise<QueueEvents>;
  close(): Promise<void>;
}

export const isQueueName = (name: string): name is QueueName =>
  (QUEUE_NAMES as readonly string[]).includes(name);

export function createQueueRegistry(opts: {
  redis: Redis;
  redisUrl: string;
  prefix: string;
  logger: Logger;
  /** Jobs that may wait to run per queue before adds answer 503 (QUEUE_MAX_WAITING). */
  maxWaiting?: number;
}): QueueRegistry {
  const queues = new Map<QueueName, Queue>(
    QUEUE_NAMES.map((name) => [
      name,
      createQueue(queueContracts[name], opts.redis, opts.prefix, opts.logger, opts.maxWaiting),
    ]),
  );
  const events = new Map<QueueName, Promise<QueueEvents>>();
  const connections: Redis[] = [];
  return {
    prefix: opts.prefix,
    names: QUEUE_NAMES,
    get(name) {
      const queue = queues.get(name);
      if (!queue) throw new Error(`unknown queue ${name}`);
      return queue;
    },
    events(name) {
      let pending = events.get(name);
      if (!pending) {
        pending = (async () => {
          // Read the stream from its last entry as of now, not from "$": QueueEvents sends its
          // first XREAD only after waitUntilReady has resolved, and a job finishing in between
          // (after job.waitUntilFinished has polled it) would otherwise be missed, leaving the
          // first Prefer: wait request of a process to sit out its whole wait.
          const queue = queues.get(name);
          if (!queue) throw new Error(`unknown queue ${name}`);
          const [last] = await opts.redis.xrevrange(queue.keys.events ?? "", "+", "-", "COUNT", 1);
          const connection = createRedis(opts.redisUrl, "worker", opts.logger);
          connections.push(connection);
          const queueEvents = new QueueEvents(name, {
            connection,
            prefix: opts.prefix,
            lastEventId: last?.[0] ?? "0-0",
          });
          queueEvents.on("error", (err) => opts.logger.error({ err, queue: name }, "queue events error"));
          await queueEvents.waitUntilReady();
          return queueEvents;
        })();
        pending.catch(() => events.delete(name));
        events.set(name, pending);
      }
      return pending;
    },
    async close() {
      const opened = await Promise.allSettled(events.values());
      await Promise.allSettled(opened.flatMap((r) => (r.status === "fulfilled" ? [r.value.close()] : [])));
      for (const connection of connections) connection.disconnect();
      await Promise.allSettled([...queues.values()].map((q) => q.close()));
    },
  };
}
