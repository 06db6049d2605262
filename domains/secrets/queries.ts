// Secrets in Postgres: the batched last-write-wins upsert of the `encryption` worker and the
// exact / wildcard lookup behind retrieval (raw postgres.js: bytea arrives as a Buffer).
import type { Sql } from "../../db/client.js";

export interface SecretWrite {
  /** Whose secret: ids are per tenant (an account, or the anonymous tenant). */
  tenant: string;
  id: string;
  ciphertext: Buffer;
  seq: number;
}

/**
 * Writes a batch of records in one statement, last write wins by `seq`: a row is replaced only
 * by a higher seq, so two workers storing one id at once, or a late retry of an older store,
 * cannot overwrite a newer value (the row lock of ON CONFLICT serialises the two, and the loser
 * re-checks the condition against the winner's row). Within a batch the highest seq per id is
 * kept (ON CONFLICT cannot touch one row twice); rows go in (tenant, id) order so concurrent
 * batches lock in the same order. Re-running a write is a no-op, as at-least-once delivery needs.
 */
export async function upsertSecrets(sql: Sql, writes: readonly SecretWrite[]): Promise<void> {
  if (writes.length === 0) return;
  const tenants = writes.map((w) => w.tenant);
  const ids = writes.map((w) => w.id);
  // base64 text arrays: postgres.js serialises text[] reliably; bytea[] of Buffers it does not.
  const ciphertexts = writes.map((w) => w.ciphertext.toString("base64"));
  const seqs = writes.map((w) => String(w.seq));
  await sql`
    insert into secrets as s (tenant, id, ciphertext, seq)
    select distinct on (tenant, id) tenant, id, decode(ciphertext, 'base64'), seq
    from unnest(${tenants}::text[], ${ids}::text[], ${ciphertexts}::text[], ${seqs}::int8[])
      as t(tenant, id, ciphertext, seq)
    order by tenant, id, seq desc
    on conflict (tenant, id) do update set ciphertext = excluded.ciphertext, seq = excluded.seq, updated_at = now()
    where s.seq < excluded.seq`;
}

/**
 * An id pattern as SQL LIKE: `*` matches any run of characters; `%`, `_` and `\` are escaped,
 * so in ids they are literal, never wildcards. Undefined when the pattern has no `*` (exact id).
 */
export function likePattern(pattern: string): string | undefined {
  if (!pattern.includes("*")) return undefined;
  return pattern.replace(/[\\%_]/g, (ch) => `\\${ch}`).replace(/\*/g, "%");
}

export interface SecretRow {
  id: string;
  ciphertext: Buffer;
}

/**
 * The tenant's records whose id equals `pattern` (no `*`) or matches it as a wildcard, in id
 * order (byte order: the column's collation is "C"), after the id `after` when given, at most
 * `limit`. The primary key (tenant, id) serves both: an equality on tenant, then a range of ids.
 */
export async function findSecrets(
  sql: Sql,
  query: { tenant: string; pattern: string; after?: string | undefined; limit: number },
): Promise<SecretRow[]> {
  const like = likePattern(query.pattern);
  const match = like === undefined ? sql`id = ${query.pattern}` : sql`id like ${like} escape '\\'`;
  const after = query.after === undefined ? sql`` : sql`and id > ${query.after}`;
  return sql<SecretRow[]>`
    select id, ciphertext from secrets
    where tenant = ${query.tenant} and ${match} ${after}
    order by id
    limit ${query.limit}`;
}
