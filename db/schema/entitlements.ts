// Entitlements: the datasets sold (historical USD prices of a crypto asset at some frequencies),
// the access Quants ask for, what Ops (or the policy) decided, the grants that follow, and the
// prices and market caps the `backfills` queue fills from CoinCap (domains/entitlements/).
import { sql } from "drizzle-orm";
import {
  bigserial,
  date,
  index,
  numeric,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";
import { accounts } from "./identity.js";

/** A dataset: one asset's prices. Seeded by the migration (BTC, ETH). */
export const datasets = pgTable("datasets", {
  // The ticker, e.g. `BTC`: the dataset's id in every URL.
  symbol: text().primaryKey(),
  name: text().notNull(),
  // CoinCap's asset id (`bitcoin`), the path segment of its /assets/{slug} calls.
  coincapSlug: text().notNull(),
  // Frequencies sold: `1h`, `1d`, `1mo`.
  frequencies: text().array().notNull(),
  createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
});

/** A Quant's request for some frequencies of one dataset. */
export const accessRequests = pgTable(
  "access_requests",
  {
    // areq_…
    id: text().primaryKey(),
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    datasetSymbol: text()
      .notNull()
      .references(() => datasets.symbol),
    frequencies: text().array().notNull(),
    // Why the Quant asks (optional, shown to Ops).
    note: text(),
    // pending, approved (every frequency), partially_approved, refused, cancelled.
    status: text().notNull().default("pending"),
    // The frequencies granted by the decision (empty until decided, or when refused).
    grantedFrequencies: text().array().notNull().default(sql`'{}'::text[]`),
    // Who decided: an ops/admin account, or null when the policy decided.
    decidedBy: text().references(() => accounts.id),
    decidedAt: timestamp({ withTimezone: true }),
    decisionReason: text(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("access_requests_account_idx").on(t.accountId, t.createdAt),
    index("access_requests_pending_idx").on(t.createdAt).where(sql`status = 'pending'`),
  ],
);

/** A request's history: created, decided (by whom, why), cancelled. Append-only. */
export const accessRequestEvents = pgTable(
  "access_request_events",
  {
    id: bigserial({ mode: "number" }).primaryKey(),
    requestId: text()
      .notNull()
      .references(() => accessRequests.id),
    // created, approved, partially_approved, refused, cancelled.
    action: text().notNull(),
    // The account that acted; null: the policy (an automatic decision).
    actorId: text().references(() => accounts.id),
    frequencies: text().array().notNull().default(sql`'{}'::text[]`),
    reason: text(),
    at: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("access_request_events_request_idx").on(t.requestId, t.id)],
);

/**
 * A grant: an account may read one frequency of one dataset, until `expiresAt` (a trial; null:
 * no end) unless revoked. At most one grant per account, dataset and frequency is in force
 * (not revoked); granting again updates it.
 */
export const entitlements = pgTable(
  "entitlements",
  {
    // ent_…
    id: text().primaryKey(),
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    datasetSymbol: text()
      .notNull()
      .references(() => datasets.symbol),
    frequency: text().notNull(),
    // The request it answered; null: granted by Ops directly.
    requestId: text().references(() => accessRequests.id),
    grantedBy: text().references(() => accounts.id),
    grantedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp({ withTimezone: true }),
    revokedAt: timestamp({ withTimezone: true }),
    revokedBy: text().references(() => accounts.id),
    revokeReason: text(),
    // When the holder was told the trial ended (once).
    expiryNotifiedAt: timestamp({ withTimezone: true }),
  },
  (t) => [
    uniqueIndex("entitlements_in_force_key")
      .on(t.accountId, t.datasetSymbol, t.frequency)
      .where(sql`revoked_at is null`),
    index("entitlements_expiry_idx")
      .on(t.expiresAt)
      .where(sql`revoked_at is null and expiry_notified_at is null`),
  ],
);

/**
 * USD prices: one point per dataset, frequency and time (the start of the hour, day or month,
 * UTC). Numbers are kept exact: CoinCap's decimal strings go into `numeric`, never a float.
 */
export const prices = pgTable(
  "prices",
  {
    datasetSymbol: text()
      .notNull()
      .references(() => datasets.symbol),
    frequency: text().notNull(),
    time: timestamp({ withTimezone: true }).notNull(),
    priceUsd: numeric().notNull(),
    circulatingSupply: numeric(),
    // Where the point came from: `coincap`, or `simulated` (the bundled CoinCap-compatible server).
    source: text().notNull(),
    fetchedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.datasetSymbol, t.frequency, t.time] })],
);

/** The market cap (USD) of each dataset per UTC day, backfilled daily at 20:00 UTC. */
export const marketCaps = pgTable(
  "market_caps",
  {
    datasetSymbol: text()
      .notNull()
      .references(() => datasets.symbol),
    day: date({ mode: "string" }).notNull(),
    marketCapUsd: numeric().notNull(),
    // `asset`: CoinCap's marketCapUsd taken at backfill time; `price_x_supply`: a past day's
    // close times its circulating supply.
    method: text().notNull(),
    source: text().notNull(),
    fetchedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.datasetSymbol, t.day] })],
);
