// Identity: accounts (with a role), their API keys and the audit log of what admins did. No
// credential or e-mail address rests in clear: a key is kept as an HMAC of itself (it is never
// shown again), an e-mail address sealed under ACCOUNT_DATA_KEY with a keyed blind index beside it
// so that uniqueness and lookup by address still work (domains/identity/).
import { sql } from "drizzle-orm";
import {
  bigserial,
  customType,
  index,
  jsonb,
  pgEnum,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

const bytea = customType<{ data: Buffer }>({ dataType: () => "bytea" });

export const accountRole = pgEnum("account_role", ["admin", "ops", "quant", "client"]);
export const ACCOUNT_ROLES = accountRole.enumValues;
export type AccountRole = (typeof ACCOUNT_ROLES)[number];

export const accounts = pgTable(
  "accounts",
  {
    id: text().primaryKey(),
    role: accountRole().notNull(),
    name: text().notNull(),
    // lib/sealing's format under ACCOUNT_DATA_KEY, bound to the account id; null: no address.
    emailSealed: text(),
    // HMAC-SHA-256 of the normalised address under a sub-key of ACCOUNT_DATA_KEY.
    emailIndex: bytea(),
    disabledAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("accounts_email_index_key").on(t.emailIndex),
    index("accounts_role_idx").on(t.role, t.id),
  ],
);

export const apiKeys = pgTable(
  "api_keys",
  {
    id: text().primaryKey(),
    accountId: text()
      .notNull()
      .references(() => accounts.id),
    // HMAC-SHA-256 of the whole key under API_KEY_HASH_KEY: what a presented key is looked up by.
    hash: bytea().notNull(),
    // The first characters of the key (`cvy_` and 8 more), for people and secret scanners.
    prefix: text().notNull(),
    name: text().notNull().default(""),
    expiresAt: timestamp({ withTimezone: true }),
    revokedAt: timestamp({ withTimezone: true }),
    // Set on the key a rotation replaced, to the key that replaced it.
    replacedBy: text(),
    lastUsedAt: timestamp({ withTimezone: true }),
    // When its owner was told the key expires soon (key.expiring); null: not yet.
    expiryNotifiedAt: timestamp({ withTimezone: true }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("api_keys_hash_key").on(t.hash),
    index("api_keys_prefix_idx").using("btree", sql`${t.prefix} text_pattern_ops`),
    index("api_keys_account_idx").on(t.accountId, t.createdAt),
  ],
);

export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigserial({ mode: "number" }).primaryKey(),
    at: timestamp({ withTimezone: true }).notNull().defaultNow(),
    // Null when the actor is the keys command (a shell on a server), not an API caller.
    actorAccountId: text(),
    actorKeyId: text(),
    action: text().notNull(),
    targetType: text().notNull(),
    targetId: text().notNull(),
    // What changed, never a credential or an address in clear.
    details: jsonb().notNull().default({}),
    requestId: text(),
  },
  (t) => [index("audit_events_target_idx").on(t.targetType, t.targetId, t.id)],
);
