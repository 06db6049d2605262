// Notifications: what happened that an account should know, one row per account and event. The
// table is also the transactional outbox: a domain inserts the row in the transaction of the
// change that caused it (domains/notifications/service.ts, notify), and the relay moves committed
// rows onto the `notifications` queue, numbering them as it goes.
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  index,
  jsonb,
  pgSequence,
  pgTable,
  primaryKey,
  text,
  timestamp,
} from "drizzle-orm/pg-core";
import { accounts } from "./identity.js";

/**
 * The relay's order: it numbers the rows it moves, one relay at a time, so a stream that resumes
 * "after the last one seen" misses none (row ids are given at insert, and transactions commit in
 * any order).
 */
export const notificationsRelaySeq = pgSequence("notifications_relay_seq");

export const notifications = pgTable(
  "notifications",
  {
    id: bigserial({ mode: "number" }).primaryKey(),
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    // A type of the catalog (domains/notifications/types.ts), e.g. `key.revoked`.
    type: text().notNull(),
    data: jsonb().notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    readAt: timestamp({ withTimezone: true }),
    // Set by the relay once the row is on the queue; null: still in the outbox.
    relayedAt: timestamp({ withTimezone: true }),
    // The relay's number for it (notificationsRelaySeq): what streams resume after.
    seq: bigint({ mode: "number" }),
  },
  (t) => [
    index("notifications_account_idx").on(t.accountId, t.id),
    index("notifications_account_seq_idx").on(t.accountId, t.seq),
    index("notifications_outbox_idx").on(t.id).where(sql`relayed_at is null`),
  ],
);

/**
 * An account's choice about a type sent to an audience (a role) rather than to one account, e.g.
 * `alert.triggered` to ops and admins: no row means the type's default (types.ts).
 */
export const notificationSubscriptions = pgTable(
  "notification_subscriptions",
  {
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    type: text().notNull(),
    subscribed: boolean().notNull(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.accountId, t.type] }),
    index("notification_subscriptions_type_idx").on(t.type),
  ],
);
