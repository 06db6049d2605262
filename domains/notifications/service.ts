// The notifications domain: any domain tells an account that something happened with one call,
// `notify(tx, …)`, inside the transaction of the change (a transactional outbox: the notification
// commits with the change, or not at all). The relay, in the workers serving `notifications`,
// moves committed notifications onto the queue, woken by Postgres at each commit (NOTIFY) and
// polling besides; a `notifications.publish` job announces one to the account's live streams.
// The inbox reads them back; webhooks (webhooks.ts) send them to the account's endpoints.
import type { Redis } from "ioredis";
import type { TransactionSql } from "postgres";
import { AppError } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { createRedis } from "../../lib/redis.js";
import { notificationsQueue } from "../../queues/notifications.js";
import type { Connections } from "../connections.js";
import type { Role } from "../identity/caller.js";
import {
  findNotification,
  insertAudienceNotifications,
  insertNotification,
  listNotifications,
  markRead,
  type NotificationRow,
  notificationsAfter,
  OUTBOX_CHANNEL,
  relayOutbox,
  setSubscription,
  subscriptionChoices,
} from "./queries.js";
import {
  audienceOf,
  isNotificationType,
  NOTIFICATION_TYPES,
  type NotificationData,
  type NotificationTypeName,
  notificationCatalog,
} from "./types.js";
import { createWebhooksService, type WebhooksConfig } from "./webhooks.js";

/** Notifications the relay moves per transaction. */
const RELAY_BATCH = 500;
/** The relay looks at the outbox this often even without a wake-up (a NOTIFY lost with a connection). */
const RELAY_POLL_MS = 1_000;

/** A notification as the inbox and the streams show it. */
export interface NotificationView {
  id: number;
  /** The relay's number: what a stream's event id is, and resumes after. */
  seq: number;
  type: string;
  data: unknown;
  createdAt: string;
  read: boolean;
}

const view = (row: NotificationRow): NotificationView => ({
  id: Number(row.id),
  seq: Number(row.seq ?? 0),
  type: row.type,
  data: row.data,
  createdAt: row.createdAt.toISOString(),
  read: row.readAt !== null,
});

export type NotificationsService = ReturnType<typeof createNotificationsService>;

export function createNotificationsService(
  config: WebhooksConfig & { REDIS_URL: string },
  { database, redis, queues, logger }: Pick<Connections, "database" | "redis" | "queues" | "logger">,
) {
  const sql = database.sql;
  const webhooks = createWebhooksService(config, { database, redis, queues, logger });
  const channel = `${config.QUEUE_PREFIX}:notifications:published`;

  async function relay(): Promise<number> {
    let moved = 0;
    for (;;) {
      const n = await relayOutbox(sql, RELAY_BATCH, async (ids) => {
        await queues.get(notificationsQueue.name).addBulk(
          ids.map((id) => ({
            name: "notifications.publish",
            data: { id },
            // One job per notification, however often it is relayed (a crash between the enqueue
            // and the commit): the queue ignores an id it has.
            opts: { ...notificationsQueue.defaultJobOptions, jobId: `n-${id}` },
          })),
        );
      });
      moved += n;
      if (n < RELAY_BATCH) return moved;
    }
  }

  // ---- Live: one subscriber per process, fanned out to its streams ------------------------------
  const listeners = new Set<(accountId: string, n: NotificationView) => void>();
  let subscriber: Redis | undefined;
  function listen(): Promise<void> {
    if (subscriber) return Promise.resolve();
    subscriber = createRedis(config.REDIS_URL, "worker", logger, { connectionName: "notifications-live" });
    subscriber.on("message", (_channel: string, message: string) => {
      try {
        const { accountId, notification } = JSON.parse(message) as {
          accountId: string;
          notification: NotificationView;
        };
        for (const listener of listeners) listener(accountId, notification);
      } catch {
        // Not ours: nothing to deliver.
      }
    });
    return subscriber.subscribe(channel).then(() => undefined);
  }

  return {
    /**
     * Records a notification for `account` in the transaction `tx` of the change that caused it:
     * it is delivered if and only if that transaction commits. `data` must match the type's schema.
     */
    async notify<T extends NotificationTypeName>(
      tx: TransactionSql,
      n: { account: string; type: T; data: NotificationData<T> },
    ): Promise<number> {
      const data = NOTIFICATION_TYPES[n.type].schema.parse(n.data);
      return insertNotification(tx, { accountId: n.account, type: n.type, data });
    },

    /**
     * Announces events of types sent to an audience (types.ts: `audience`), e.g. `alert.triggered`:
     * each goes to every active account of the audience's roles that subscribes, in the
     * transaction `tx` of the change. Answers how many notifications were made.
     */
    async notifyAudience<T extends NotificationTypeName>(
      tx: TransactionSql,
      events: readonly { type: T; data: NotificationData<T> }[],
    ): Promise<number> {
      const byType = new Map<T, unknown[]>();
      for (const e of events) {
        const list = byType.get(e.type) ?? [];
        list.push(NOTIFICATION_TYPES[e.type].schema.parse(e.data));
        byType.set(e.type, list);
      }
      let made = 0;
      for (const [type, data] of byType) {
        const audience = audienceOf(type);
        if (!audience) throw new Error(`${type} is addressed to one account: use notify()`);
        made += await insertAudienceNotifications(tx, { type, ...audience, data });
      }
      return made;
    },

    /** The announced types an account of `role` may receive, and whether it does. */
    async subscriptions(accountId: string, role: Role) {
      const choices = await subscriptionChoices(sql, accountId);
      return (Object.keys(NOTIFICATION_TYPES) as NotificationTypeName[]).flatMap((type) => {
        const audience = audienceOf(type);
        if (!audience?.roles.includes(role)) return [];
        return [
          {
            type,
            subscribed: choices.get(type) ?? audience.subscribedByDefault,
            default: audience.subscribedByDefault,
          },
        ];
      });
    },

    /**
     * Subscribes an account to an announced type, or unsubscribes it. NOT_FOUND for a type not in
     * the catalog; VALIDATION_FAILED for one addressed to single accounts; FORBIDDEN when the
     * account's role is not in the type's audience.
     */
    async updateSubscription(q: { accountId: string; role: Role; type: string; subscribed: boolean }) {
      if (!isNotificationType(q.type)) throw new AppError("NOT_FOUND", `no notification type ${q.type}`);
      const audience = audienceOf(q.type);
      if (!audience)
        throw new AppError(
          "VALIDATION_FAILED",
          `${q.type} is sent to the account it concerns; there is no subscription to it`,
        );
      if (!audience.roles.includes(q.role))
        throw new AppError("FORBIDDEN", `${q.type} is sent to ${audience.roles.join(" and ")} accounts only`);
      await setSubscription(sql, q);
      return { type: q.type, subscribed: q.subscribed, default: audience.subscribedByDefault };
    },

    /** Moves committed notifications from the outbox onto the queue; answers how many. */
    relay,

    /**
     * Runs the relay in this process (the workers serving `notifications`): at every commit that
     * notified (Postgres NOTIFY), and every RELAY_POLL_MS besides. Answers the stop.
     */
    startRelay(log: Logger): () => Promise<void> {
      let running: Promise<unknown> = Promise.resolve();
      let again = false;
      let busy = false;
      const run = () => {
        if (busy) {
          again = true;
          return;
        }
        busy = true;
        running = relay()
          .catch((err: unknown) =>
            log.warn({ err: { message: (err as Error).message } }, "notifications relay failed; retrying"),
          )
          .finally(() => {
            busy = false;
            if (again) {
              again = false;
              run();
            }
          });
      };
      const listening = sql.listen(OUTBOX_CHANNEL, run, run).catch((err: unknown) => {
        log.warn(
          { err: { message: (err as Error).message } },
          "notifications relay: LISTEN failed; polling only",
        );
        return undefined;
      });
      const timer = setInterval(run, RELAY_POLL_MS);
      timer.unref();
      return async () => {
        clearInterval(timer);
        await (await listening)?.unlisten().catch(() => {});
        await running;
      };
    },

    /**
     * Announces a relayed notification to its account's streams and makes one webhook delivery
     * per matching endpoint (the `notifications.publish` job; a repeat makes none twice).
     */
    async publish(id: number): Promise<"published" | "gone"> {
      const row = await findNotification(sql, id);
      if (!row) return "gone";
      // The relay enqueues inside its transaction: a job can run before that commit, and would
      // announce the row without its number (a stream would resume from 0). Retried (backoff).
      if (row.seq === null) throw new Error(`notification ${id} is not relayed yet; retrying`);
      // Deliveries first: a repeat of this job makes none twice, where a repeated announcement
      // would reach the streams twice.
      await webhooks.fanOut(row);
      await redis.publish(channel, JSON.stringify({ accountId: row.accountId, notification: view(row) }));
      return "published";
    },

    /** The account's webhook endpoints and their deliveries (webhooks.ts). */
    webhooks,

    /** The account's notifications, newest first, a page at a time. */
    async list(q: { accountId: string; unread: boolean; before?: number | undefined; limit: number }) {
      const rows = await listNotifications(sql, { ...q, limit: q.limit + 1 });
      const items = rows.slice(0, q.limit).map(view);
      return { items, nextBefore: rows.length > q.limit ? (items.at(-1)?.id ?? null) : null };
    },

    /** Marks one of the account's notifications read; NOT_FOUND when it has none of that id. */
    async markRead(accountId: string, id: number): Promise<void> {
      if ((await markRead(sql, { accountId, id })) === 0) {
        const row = await findNotification(sql, id);
        if (!row || row.accountId !== accountId) throw new AppError("NOT_FOUND", `no notification ${id}`);
      }
    },

    /** Marks every notification of the account read; answers how many were unread. */
    markAllRead: (accountId: string) => markRead(sql, { accountId }),

    /** The account's notifications relayed after relay number `afterSeq` (a stream resuming). */
    async after(accountId: string, afterSeq: number): Promise<NotificationView[]> {
      return (await notificationsAfter(sql, { accountId, afterSeq, limit: 1000 })).map(view);
    },

    /** Calls `listener` with every notification published from now on; answers the unsubscribe. */
    async subscribe(listener: (accountId: string, n: NotificationView) => void): Promise<() => void> {
      listeners.add(listener);
      await listen();
      return () => listeners.delete(listener);
    },

    /** The catalog of types (types.ts). */
    catalog: notificationCatalog,

    async close(): Promise<void> {
      listeners.clear();
      if (subscriber) await subscriber.quit().catch(() => subscriber?.disconnect());
    },
  };
}
