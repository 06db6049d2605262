// Usage: who calls what, and how much. A usage client is an account of role `client` with a
// `usage_clients` row (its public client_id, its IP allowlist and its own rate limits). Hits land
// in `api_hits`, a table range-partitioned by day, which drizzle cannot describe: it is created by
// the hand-written migration 0004_usage_hits.sql (drizzle-kit's --custom) and written with raw SQL (domains/usage/queries.ts).
// The rollups below are kept in the same statement as the hits they count.
import {
  bigint,
  date,
  index,
  integer,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { accounts } from "./identity.js";

export const usageClients = pgTable(
  "usage_clients",
  {
    accountId: text()
      .primaryKey()
      .references(() => accounts.id),
    // The seed's handle of a client: chosen at registration, or the account id.
    clientId: text().notNull(),
    // CIDR blocks a client's requests must come from; empty: from anywhere.
    ipAllowlist: text().array().notNull().default([]),
    // Per-client rate limits (requests per minute / hour); null: the configured defaults.
    readsPerMinute: integer(),
    readsPerHour: integer(),
    hitsPerMinute: integer(),
    hitsPerHour: integer(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("usage_clients_client_id_key").on(t.clientId)],
);

/** Hits per client per UTC day: what /api/usage/daily reads. */
export const usageDaily = pgTable(
  "usage_daily",
  {
    accountId: text().notNull(),
    day: date({ mode: "string" }).notNull(),
    hits: bigint({ mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.day] })],
);

/** Hits per client per UTC hour: the rolling 24 h window (/api/usage/top) and its rebuild. */
export const usageHourly = pgTable(
  "usage_hourly",
  {
    accountId: text().notNull(),
    hour: timestamp({ withTimezone: true }).notNull(),
    hits: bigint({ mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.hour] }), index("usage_hourly_hour_idx").on(t.hour)],
);
