// Usage in Postgres (raw postgres.js): the hits and their rollups written in one statement, the
// day partitions of api_hits, the reads behind /api/usage, and the usage clients.
import type { TransactionSql } from "postgres";
import type { Sql } from "../../db/client.js";
import type { LoggedHit } from "../../queues/log-batching.js";

/** Hits newly counted for a client in one UTC hour, by a committed batch. */
export interface CountedHits {
  accountId: string;
  clientId: string;
  /** Epoch ms of the hour's start. */
  hour: number;
  hits: number;
}

/**
 * Inserts the hits and adds to the daily and hourly rollups the ones actually inserted, in one
 * statement (one transaction): a hit already there (a batch delivered twice, a retry after a
 * crash) is skipped and counted nowhere. Rollup rows are written in key order, so concurrent
 * batches lock them in the same order. Answers what was counted, per client and hour.
 */
export async function insertHits(sql: Sql, hits: readonly LoggedHit[]): Promise<CountedHits[]> {
  if (hits.length === 0) return [];
  const rows = await sql<{ accountId: string; clientId: string | null; hour: Date; hits: number }[]>`
    with inserted as (
      insert into api_hits (id, account_id, at, ip, endpoint, method, status)
      select id, account_id, to_timestamp(at_ms / 1000.0), ip, endpoint, method, status
      from unnest(
        ${hits.map((h) => h.id)}::text[],
        ${hits.map((h) => h.accountId)}::text[],
        ${hits.map((h) => h.at)}::int8[],
        ${hits.map((h) => h.ip)}::inet[],
        ${hits.map((h) => h.endpoint)}::text[],
        ${hits.map((h) => h.method ?? null)}::text[],
        ${hits.map((h) => h.status ?? null)}::int2[]
      ) as t(id, account_id, at_ms, ip, endpoint, method, status)
      on conflict do nothing
      returning account_id, date_trunc('hour', at, 'UTC') as hour
    ),
    per_hour as (
      select account_id, hour, count(*)::int as hits from inserted group by account_id, hour
    ),
    daily as (
      insert into usage_daily as d (account_id, day, hits)
      select account_id, (hour at time zone 'UTC')::date, sum(hits) from per_hour
      group by 1, 2 order by 1, 2
      on conflict (account_id, day) do update set hits = d.hits + excluded.hits
    ),
    hourly as (
      insert into usage_hourly as h (account_id, hour, hits)
      select account_id, hour, hits from per_hour order by 1, 2
      on conflict (account_id, hour) do update set hits = h.hits + excluded.hits
    )
    select p.account_id as "accountId", c.client_id as "clientId", p.hour, p.hits
    from per_hour p left join usage_clients c on c.account_id = p.account_id`;
  return rows.map((r) => ({
    accountId: r.accountId,
    clientId: r.clientId ?? r.accountId,
    hour: r.hour.getTime(),
    hits: r.hits,
  }));
}

/** SQLSTATE of an insert into a partitioned table that finds no partition for a row. */
export const NO_PARTITION = "23514";

const DAY_MS = 86_400_000;
const partitionName = (dayMs: number) =>
  `api_hits_p${new Date(dayMs).toISOString().slice(0, 10).replace(/-/g, "")}`;
const isoDay = (dayMs: number) => new Date(dayMs).toISOString().slice(0, 10);

/** The UTC day (epoch ms of its midnight) an instant falls in. */
export const utcDay = (ms: number) => Math.floor(ms / DAY_MS) * DAY_MS;

/**
 * Creates the day partitions of api_hits for `days` (epoch ms of UTC midnights) that do not exist,
 * under an advisory lock, so workers racing to create the same day do not collide.
 */
export async function createDayPartitions(sql: Sql, days: readonly number[]): Promise<string[]> {
  const created: string[] = [];
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('conveyor:usage:partitions'))`;
    for (const day of [...new Set(days)].sort((a, b) => a - b)) {
      const name = partitionName(day);
      const [exists] = await tx`select 1 from pg_class where relname = ${name}`;
      if (exists) continue;
      await tx.unsafe(
        `create table "${name}" partition of api_hits for values from ('${isoDay(day)} 00:00:00+00') to ('${isoDay(day + DAY_MS)} 00:00:00+00')`,
      );
      created.push(name);
    }
  });
  return created;
}

/** Drops the day partitions of api_hits whose whole day is before `beforeDayMs`. */
export async function dropDayPartitionsBefore(sql: Sql, beforeDayMs: number): Promise<string[]> {
  const partitions = await sql<{ name: string }[]>`
    select c.relname as name from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    join pg_class p on p.oid = i.inhparent
    where p.relname = 'api_hits' and c.relname ~ '^api_hits_p[0-9]{8}$'`;
  const cutoff = partitionName(beforeDayMs);
  const old = partitions.map((p) => p.name).filter((name) => name < cutoff);
  for (const name of old.sort()) await sql.unsafe(`drop table if exists "${name}"`);
  return old;
}

export interface DailyUsage {
  accountId: string;
  clientId: string;
  days: { date: string; requests: number }[];
}

/**
 * Requests per client per UTC day, for the `days` days ending today, zero-filled: of one client
 * (`accountId`), or of every usage client.
 */
export async function dailyUsage(
  sql: Sql,
  query: { accountId?: string | undefined; days: number; todayMs: number },
): Promise<DailyUsage[]> {
  const first = isoDay(query.todayMs - (query.days - 1) * DAY_MS);
  const last = isoDay(query.todayMs);
  const rows = await sql<{ accountId: string; clientId: string; date: string; requests: number }[]>`
    select c.account_id as "accountId", c.client_id as "clientId", d.day::date::text as date,
      coalesce(u.hits, 0)::int8 as requests
    from usage_clients c
    cross join generate_series(${first}::date, ${last}::date, interval '1 day') as d(day)
    left join usage_daily u on u.account_id = c.account_id and u.day = d.day::date
    where ${query.accountId === undefined ? sql`true` : sql`c.account_id = ${query.accountId}`}
    order by c.client_id, d.day`;
  const byClient = new Map<string, DailyUsage>();
  for (const r of rows) {
    let client = byClient.get(r.accountId);
    if (!client) {
      client = { accountId: r.accountId, clientId: r.clientId, days: [] };
      byClient.set(r.accountId, client);
    }
    client.days.push({ date: r.date, requests: Number(r.requests) });
  }
  return [...byClient.values()];
}

/** Requests per client in the hours since `sinceHourMs`, most first, from the hourly rollup. */
export async function hourlyTotalsSince(
  sql: Sql,
  sinceHourMs: number,
): Promise<{ accountId: string; clientId: string; hour: number; hits: number }[]> {
  const rows = await sql<{ accountId: string; clientId: string | null; hour: Date; hits: number }[]>`
    select h.account_id as "accountId", c.client_id as "clientId", h.hour, h.hits::int8 as hits
    from usage_hourly h left join usage_clients c on c.account_id = h.account_id
    where h.hour >= ${new Date(sinceHourMs)}`;
  return rows.map((r) => ({
    accountId: r.accountId,
    clientId: r.clientId ?? r.accountId,
    hour: r.hour.getTime(),
    hits: Number(r.hits),
  }));
}

export interface UsageClientRow {
  accountId: string;
  clientId: string;
  ipAllowlist: string[];
  /** The client's own limits; null: the configured defaults. */
  readsPerMinute: number | null;
  readsPerHour: number | null;
  hitsPerMinute: number | null;
  hitsPerHour: number | null;
  createdAt: Date;
}

const CLIENT_COLUMNS = (sql: Sql | TransactionSql) => sql`
  account_id as "accountId", client_id as "clientId", ip_allowlist as "ipAllowlist",
  reads_per_minute as "readsPerMinute", reads_per_hour as "readsPerHour",
  hits_per_minute as "hitsPerMinute", hits_per_hour as "hitsPerHour", created_at as "createdAt"`;

export type ClientSettings = Partial<
  Pick<UsageClientRow, "ipAllowlist" | "readsPerMinute" | "readsPerHour" | "hitsPerMinute" | "hitsPerHour">
>;

/** Changes a client's allowlist or limits (a field left out stays); undefined when there is no such client. */
export async function updateUsageClient(
  sql: Sql,
  accountId: string,
  change: ClientSettings,
): Promise<UsageClientRow | undefined> {
  const keep = (column: string) => sql(column);
  const [row] = await sql<UsageClientRow[]>`
    update usage_clients set
      ip_allowlist = ${change.ipAllowlist === undefined ? keep("ip_allowlist") : change.ipAllowlist},
      reads_per_minute = ${change.readsPerMinute === undefined ? keep("reads_per_minute") : change.readsPerMinute},
      reads_per_hour = ${change.readsPerHour === undefined ? keep("reads_per_hour") : change.readsPerHour},
      hits_per_minute = ${change.hitsPerMinute === undefined ? keep("hits_per_minute") : change.hitsPerMinute},
      hits_per_hour = ${change.hitsPerHour === undefined ? keep("hits_per_hour") : change.hitsPerHour},
      updated_at = now()
    where account_id = ${accountId}
    returning ${CLIENT_COLUMNS(sql)}`;
  return row;
}

/** Usage clients by client_id, a page at a time. */
export async function listUsageClients(
  sql: Sql,
  page: { after?: string | undefined; limit: number },
): Promise<UsageClientRow[]> {
  return sql<UsageClientRow[]>`
    select ${CLIENT_COLUMNS(sql)} from usage_clients
    where ${page.after === undefined ? sql`true` : sql`client_id > ${page.after}`}
    order by client_id limit ${page.limit}`;
}

export async function insertUsageClient(
  sql: Sql | TransactionSql,
  row: { accountId: string; clientId: string },
): Promise<void> {
  await sql`insert into usage_clients (account_id, client_id) values (${row.accountId}, ${row.clientId})`;
}

export async function findUsageClient(
  sql: Sql,
  by: { accountId: string } | { clientId: string },
): Promise<UsageClientRow | undefined> {
  const where = "accountId" in by ? sql`account_id = ${by.accountId}` : sql`client_id = ${by.clientId}`;
  const [row] = await sql<UsageClientRow[]>`select ${CLIENT_COLUMNS(sql)} from usage_clients where ${where}`;
  return row;
}
