// Secrets: one encrypted record per id per tenant (the account that stored it, or `anonymous`). The row holds no plaintext and no key: `ciphertext` is
// domains/secrets/record.ts's record format, which opens only with the client's key and only under this id.
import { bigint, customType, pgTable, primaryKey, timestamp } from "drizzle-orm/pg-core";

// Byte-order ("C") collation: `id like 'prefix%'` can use the primary key's index, and id order
// (results, paging with `after`) is the same on every deployment whatever its locale.
const textC = customType<{ data: string }>({ dataType: () => 'text COLLATE "C"' });
const bytea = customType<{ data: Buffer }>({ dataType: () => "bytea" });

export const secrets = pgTable(
  "secrets",
  {
    // An account id, or `anonymous` for callers let in by ANONYMOUS_ACCESS. Ids are per tenant.
    tenant: textC().notNull().default("anonymous"),
    id: textC().notNull(),
    ciphertext: bytea().notNull(),
    // The write order assigned by the API: an upsert only replaces a row with a lower seq.
    seq: bigint({ mode: "number" }).notNull(),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: "secrets_pkey", columns: [t.tenant, t.id] })],
);
