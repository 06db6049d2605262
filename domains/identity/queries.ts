// Identity in Postgres: accounts, API keys and audit events (raw postgres.js: bytea arrives as a
// Buffer). Writes that an admin makes take a transaction, so the change and its audit event
// commit together.
import type { TransactionSql } from "postgres";
import type { Sql } from "../../db/client.js";
import type { Role } from "./caller.js";

/** A transaction or the pool: postgres.js gives both the same tagged-template call. */
export type Queryable = Sql | TransactionSql;

export interface AccountRow {
  id: string;
  role: Role;
  name: string;
  emailSealed: string | null;
  disabledAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

const ACCOUNT_COLUMNS = (sql: Queryable) =>
  sql`id, role, name, email_sealed as "emailSealed", disabled_at as "disabledAt", created_at as "createdAt", updated_at as "updatedAt"`;

export async function insertAccount(
  sql: Queryable,
  a: { id: string; role: Role; name: string; emailSealed: string | null; emailIndex: Buffer | null },
): Promise<AccountRow> {
  const [row] = await sql<AccountRow[]>`
    insert into accounts (id, role, name, email_sealed, email_index)
    values (${a.id}, ${a.role}, ${a.name}, ${a.emailSealed}, ${a.emailIndex})
    returning ${ACCOUNT_COLUMNS(sql)}`;
  return row as AccountRow;
}

export async function findAccount(sql: Queryable, id: string): Promise<AccountRow | undefined> {
  const [row] = await sql<AccountRow[]>`select ${ACCOUNT_COLUMNS(sql)} from accounts where id = ${id}`;
  return row;
}

export async function findAccountByEmailIndex(
  sql: Queryable,
  index: Buffer,
): Promise<AccountRow | undefined> {
  const [row] = await sql<
    AccountRow[]
  >`select ${ACCOUNT_COLUMNS(sql)} from accounts where email_index = ${index}`;
  return row;
}

export async function listAccounts(
  sql: Queryable,
  q: { role?: Role | undefined; after?: string | undefined; limit: number },
): Promise<AccountRow[]> {
  return sql<AccountRow[]>`
    select ${ACCOUNT_COLUMNS(sql)} from accounts
    where true
      ${q.role === undefined ? sql`` : sql`and role = ${q.role}`}
      ${q.after === undefined ? sql`` : sql`and id > ${q.after}`}
    order by id
    limit ${q.limit}`;
}

/** Whether an admin account that is not disabled exists. */
export async function hasActiveAdmin(sql: Queryable): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    select exists (select 1 from accounts where role = 'admin' and disabled_at is null) as found`;
  return row?.found ?? false;
}

export async function updateAccount(
  sql: Queryable,
  id: string,
  change: {
    name?: string | undefined;
    email?: { sealed: string; index: Buffer } | null | undefined;
    disabled?: boolean | undefined;
  },
): Promise<AccountRow | undefined> {
  const [row] = await sql<AccountRow[]>`
    update accounts set
      name = coalesce(${change.name ?? null}, name),
      email_sealed = ${change.email === undefined ? sql`email_sealed` : (change.email?.sealed ?? null)},
      email_index = ${change.email === undefined ? sql`email_index` : (change.email?.index ?? null)},
      disabled_at = ${
        change.disabled === undefined
          ? sql`disabled_at`
          : change.disabled
            ? sql`coalesce(disabled_at, now())`
            : null
      },
      updated_at = now()
    where id = ${id}
    returning ${ACCOUNT_COLUMNS(sql)}`;
  return row;
}

export interface ApiKeyRow {
  id: string;
  accountId: string;
  prefix: string;
  name: string;
  expiresAt: Date | null;
  revokedAt: Date | null;
  replacedBy: string | null;
  lastUsedAt: Date | null;
  createdAt: Date;
}

/** What authentication needs of a key: the key and its account's role and state. */
export interface KeyGrantRow {
  id: string;
  accountId: string;
  role: Role;
  expiresAt: Date | null;
  revokedAt: Date | null;
  accountDisabledAt: Date | null;
}

const KEY_COLUMNS = (sql: Queryable) =>
  sql`id, account_id as "accountId", prefix, name, expires_at as "expiresAt", revoked_at as "revokedAt",
      replaced_by as "replacedBy", last_used_at as "lastUsedAt", created_at as "createdAt"`;

export async function insertApiKey(
  sql: Queryable,
  k: { id: string; accountId: string; hash: Buffer; prefix: string; name: string; expiresAt: Date | null },
): Promise<ApiKeyRow> {
  const [row] = await sql<ApiKeyRow[]>`
    insert into api_keys (id, account_id, hash, prefix, name, expires_at)
    values (${k.id}, ${k.accountId}, ${k.hash}, ${k.prefix}, ${k.name}, ${k.expiresAt})
    returning ${KEY_COLUMNS(sql)}`;
  return row as ApiKeyRow;
}

const grantQuery = (sql: Queryable) => sql`
  select k.id, k.account_id as "accountId", a.role, k.expires_at as "expiresAt", k.revoked_at as "revokedAt",
         a.disabled_at as "accountDisabledAt"
  from api_keys k join accounts a on a.id = k.account_id`;

export async function findGrantByHash(sql: Queryable, hash: Buffer): Promise<KeyGrantRow | undefined> {
  const [row] = await sql<KeyGrantRow[]>`${grantQuery(sql)} where k.hash = ${hash}`;
  return row;
}

export async function findGrantById(sql: Queryable, id: string): Promise<KeyGrantRow | undefined> {
  const [row] = await sql<KeyGrantRow[]>`${grantQuery(sql)} where k.id = ${id}`;
  return row;
}

export async function findApiKey(sql: Queryable, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await sql<ApiKeyRow[]>`select ${KEY_COLUMNS(sql)} from api_keys where id = ${id}`;
  return row;
}

export async function listApiKeys(
  sql: Queryable,
  q: {
    prefix?: string | undefined;
    accountId?: string | undefined;
    after?: string | undefined;
    limit: number;
  },
): Promise<ApiKeyRow[]> {
  const like = q.prefix === undefined ? undefined : `${q.prefix.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`;
  return sql<ApiKeyRow[]>`
    select ${KEY_COLUMNS(sql)} from api_keys
    where true
      ${like === undefined ? sql`` : sql`and prefix like ${like} escape '\\'`}
      ${q.accountId === undefined ? sql`` : sql`and account_id = ${q.accountId}`}
      ${q.after === undefined ? sql`` : sql`and id > ${q.after}`}
    order by id
    limit ${q.limit}`;
}

/** Revokes a key (once: a second revocation keeps the first time). */
export async function revokeApiKey(sql: Queryable, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await sql<ApiKeyRow[]>`
    update api_keys set revoked_at = coalesce(revoked_at, now()) where id = ${id}
    returning ${KEY_COLUMNS(sql)}`;
  return row;
}

/** Marks `id` as replaced by `successor`, working until `until` at the latest. */
export async function retireApiKey(
  sql: Queryable,
  id: string,
  successor: string,
  until: Date,
): Promise<ApiKeyRow | undefined> {
  const [row] = await sql<ApiKeyRow[]>`
    update api_keys
    set replaced_by = ${successor}, expires_at = least(coalesce(expires_at, ${until}), ${until})
    where id = ${id}
    returning ${KEY_COLUMNS(sql)}`;
  return row;
}

/** The keys of an account, for revoking them all at once. */
export async function accountKeyIds(sql: Queryable, accountId: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`select id from api_keys where account_id = ${accountId}`;
  return rows.map((r) => r.id);
}

/** Records when keys were last used: one statement for a whole flush, never moving a time back. */
/**
 * Up to `limit` active keys that expire within `withinSeconds` and whose owner has not been told,
 * marked told in the same step (the caller notifies in the same transaction).
 */
export async function claimExpiringKeys(
  sql: Queryable,
  withinSeconds: number,
  limit: number,
): Promise<{ id: string; accountId: string; prefix: string; expiresAt: Date }[]> {
  return sql<{ id: string; accountId: string; prefix: string; expiresAt: Date }[]>`
    update api_keys set expiry_notified_at = now()
    where id in (
      select id from api_keys
      where revoked_at is null and expiry_notified_at is null and expires_at > now()
        and expires_at <= now() + make_interval(secs => ${withinSeconds})
      order by expires_at limit ${limit} for update skip locked
    )
    returning id, account_id as "accountId", prefix, expires_at as "expiresAt"`;
}

export async function touchApiKeys(sql: Queryable, used: ReadonlyMap<string, number>): Promise<void> {
  if (used.size === 0) return;
  const ids = [...used.keys()];
  const times = [...used.values()].map((ms) => new Date(ms).toISOString());
  await sql`
    update api_keys k set last_used_at = greatest(k.last_used_at, t.at)
    from unnest(${ids}::text[], ${times}::timestamptz[]) as t(id, at)
    where k.id = t.id`;
}

export interface AuditEventRow {
  id: number;
  at: Date;
  actorAccountId: string | null;
  actorKeyId: string | null;
  action: string;
  targetType: string;
  targetId: string;
  details: Record<string, unknown>;
  requestId: string | null;
}

export type AuditEventInput = Omit<AuditEventRow, "id" | "at">;

export async function insertAuditEvent(sql: Queryable, e: AuditEventInput): Promise<void> {
  await sql`
    insert into audit_events (actor_account_id, actor_key_id, action, target_type, target_id, details, request_id)
    values (${e.actorAccountId}, ${e.actorKeyId}, ${e.action}, ${e.targetType}, ${e.targetId},
            ${sql.json(e.details as never)}, ${e.requestId})`;
}

/** Newest first, before the id `before` when given. */
export async function listAuditEvents(
  sql: Queryable,
  q: {
    before?: number | undefined;
    targetId?: string | undefined;
    action?: string | undefined;
    limit: number;
  },
): Promise<AuditEventRow[]> {
  return sql<AuditEventRow[]>`
    select id, at, actor_account_id as "actorAccountId", actor_key_id as "actorKeyId", action,
           target_type as "targetType", target_id as "targetId", details, request_id as "requestId"
    from audit_events
    where true
      ${q.before === undefined ? sql`` : sql`and id < ${q.before}`}
      ${q.targetId === undefined ? sql`` : sql`and target_id = ${q.targetId}`}
      ${q.action === undefined ? sql`` : sql`and action = ${q.action}`}
    order by id desc
    limit ${q.limit}`;
}
