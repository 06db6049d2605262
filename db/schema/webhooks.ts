// Webhooks of the notifications domain: an account's endpoints (signing secrets sealed at rest,
// never in clear), one delivery per notification and endpoint (its id is the `webhook-id`), and
// every attempt at it (domains/notifications/webhooks.ts).
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { accounts } from "./identity.js";
import { notifications } from "./notifications.js";

export const webhookEndpoints = pgTable(
  "webhook_endpoints",
  {
    // whep_…
    id: text().primaryKey(),
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    url: text().notNull(),
    // Notification types sent to it; empty: all of them.
    types: text().array().notNull().default(sql`'{}'::text[]`),
    // The signing secret (`whsec_…`), sealed under a sub-key of ACCOUNT_DATA_KEY, bound to the id.
    secretSealed: text().notNull(),
    // The secret a rotation replaced, still signing beside the current one until it expires.
    previousSecretSealed: text(),
    previousSecretExpiresAt: timestamp({ withTimezone: true }),
    disabledAt: timestamp({ withTimezone: true }),
    disabledReason: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("webhook_endpoints_account_idx").on(t.accountId, t.createdAt)],
);

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    // msg_…: the `webhook-id` header, the same on every attempt.
    id: text().primaryKey(),
    endpointId: text()
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    // Null for a test ping (POST /v1/webhooks/{id}/test).
    notificationId: bigint({ mode: "number" }).references(() => notifications.id),
    type: text().notNull(),
    // The body sent on every attempt: {type, timestamp, data}.
    payload: jsonb().notNull(),
    // pending, succeeded or dead.
    state: text().notNull().default("pending"),
    attempts: integer().notNull().default(0),
    nextAttemptAt: timestamp({ withTimezone: true }),
    lastStatus: integer(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.createdAt),
    // One delivery per notification and endpoint, however often the publish job runs.
    uniqueIndex("webhook_deliveries_notification_idx").on(t.endpointId, t.notificationId),
  ],
);

export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    id: bigserial({ mode: "number" }).primaryKey(),
    deliveryId: text()
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: "cascade" }),
    // The HTTP status; null when no answer came (timeout, refused, network).
    status: integer(),
    error: text(),
    durationMs: integer().notNull(),
    // The first 1 KiB of the answer's body.
    responseExcerpt: text(),
    at: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("webhook_attempts_delivery_idx").on(t.deliveryId, t.id)],
);
