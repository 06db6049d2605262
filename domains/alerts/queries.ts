// Alerts in Postgres: the batched merge of events (raw postgres.js, one statement per batch)
// and the reads behind the API and the dashboard (drizzle).
import { and, count, desc, eq, gte, lt, lte, or, type SQL, sql } from "drizzle-orm";
import type { TransactionSql } from "postgres";
import type { Db, Sql } from "../../db/client.js";
import { type AlertStatus, alerts } from "../../db/schema/alerts.js";
import { hasNoNul, isStorableInstant } from "../../lib/postgres-values.js";
import type { AlertEvent } from "../../queues/alert-ingestion.js";

/**
 * Merges a batch of events into `alerts` in one statement. The merge is commutative and
 * idempotent, so order of arrival, duplicates and two workers writing the same alert at
 * once all end in the same row:
 * - lifecycle timestamps only ever fill in (earliest wins when two disagree);
 * - status is derived (resolvedOn ⇒ RESOLVED, acknowledgedOn ⇒ at least ACKNOWLEDGED) and
 *   only moves forward (the enum is declared in lifecycle order, so GREATEST works);
 * - name, responder and service come from the event that moved the lifecycle furthest;
 *   an event that does not advance it only fills in what is missing.
 * Events for one alert within a batch are folded in SQL first (ON CONFLICT cannot touch a
 * row twice), rows are written in key order so concurrent batches lock in the same order,
 * and a row is not rewritten when an event brings nothing new.
 */
export async function mergeAlertEvents(
  sql: Sql | TransactionSql,
  events: readonly AlertEvent[],
): Promise<AlertTransition[]> {
  if (events.length === 0) return [];
  const cols = {
    id: [] as string[],
    name: [] as string[],
    status: [] as string[],
    responderId: [] as (string | null)[],
    responderName: [] as (string | null)[],
    serviceId: [] as (string | null)[],
    serviceName: [] as (string | null)[],
    triggered: [] as string[],
    acked: [] as (string | null)[],
    resolved: [] as (string | null)[],
  };
  for (const { alert: a } of events) {
    cols.id.push(a.alertId);
    cols.name.push(a.name);
    cols.status.push(a.status);
    cols.responderId.push(a.responder?.userId ?? null);
    cols.responderName.push(a.responder?.name ?? null);
    cols.serviceId.push(a.service?.serviceId ?? null);
    cols.serviceName.push(a.service?.name ?? null);
    cols.triggered.push(a.triggeredOn);
    cols.acked.push(a.acknowledgedOn ?? null);
    cols.resolved.push(a.resolvedOn ?? null);
  }
  const rows = await sql<(AlertTransition & { statusBefore: AlertStatus | null })[]>`
    with input as (
      select * from unnest(
        ${cols.id}::text[], ${cols.name}::text[], ${cols.status}::alert_status[],
        ${cols.responderId}::text[], ${cols.responderName}::text[],
        ${cols.serviceId}::text[], ${cols.serviceName}::text[],
        ${cols.triggered}::timestamptz[], ${cols.acked}::timestamptz[], ${cols.resolved}::timestamptz[]
      ) with ordinality as t(alert_id, name, reported, responder_id, responder_name, service_id, service_name,
                             triggered_on, acknowledged_on, resolved_on, seq)
    ), derived as (
      select *, greatest(reported, case when resolved_on is not null then 'RESOLVED'::alert_status
                                        when acknowledged_on is not null then 'ACKNOWLEDGED'::alert_status
                                        else 'TRIGGERED'::alert_status end) as status
      from input
    ), folded as (
      select alert_id,
             max(status) as status,
             (array_agg(name order by status desc, seq))[1] as name,
             (array_agg(responder_id order by status desc, seq) filter (where responder_id is not null))[1] as responder_id,
             (array_agg(responder_name order by status desc, seq) filter (where responder_name is not null))[1] as responder_name,
             (array_agg(service_id order by status desc, seq) filter (where service_id is not null))[1] as service_id,
             (array_agg(service_name order by status desc, seq) filter (where service_name is not null))[1] as service_name,
             min(triggered_on) as triggered_on, min(acknowledged_on) as acknowledged_on, min(resolved_on) as resolved_on
      from derived group by alert_id
    )
    insert into alerts as a (alert_id, name, status, responder_id, responder_name, service_id, service_name,
                             triggered_on, acknowledged_on, resolved_on)
    select alert_id, name, status, responder_id, responder_name, service_id, service_name,
           triggered_on, acknowledged_on, resolved_on
    from folded order by alert_id
    on conflict (alert_id) do update set
      status = greatest(a.status, excluded.status),
      status_before = a.status,
      name = case when excluded.status > a.status then excluded.name else a.name end,
      responder_id = case when excluded.status > a.status then coalesce(excluded.responder_id, a.responder_id) else coalesce(a.responder_id, excluded.responder_id) end,
      responder_name = case when excluded.status > a.status then coalesce(excluded.responder_name, a.responder_name) else coalesce(a.responder_name, excluded.responder_name) end,
      service_id = case when excluded.status > a.status then coalesce(excluded.service_id, a.service_id) else coalesce(a.service_id, excluded.service_id) end,
      service_name = case when excluded.status > a.status then coalesce(excluded.service_name, a.service_name) else coalesce(a.service_name, excluded.service_name) end,
      triggered_on = least(a.triggered_on, excluded.triggered_on),
      acknowledged_on = least(a.acknowledged_on, excluded.acknowledged_on),
      resolved_on = least(a.resolved_on, excluded.resolved_on),
      updated_at = now()
    where excluded.status > a.status
       or excluded.triggered_on < a.triggered_on
       or excluded.acknowledged_on < a.acknowledged_on or (a.acknowledged_on is null and excluded.acknowledged_on is not null)
       or excluded.resolved_on < a.resolved_on or (a.resolved_on is null and excluded.resolved_on is not null)
       or (a.responder_id is null and excluded.responder_id is not null)
       or (a.responder_name is null and excluded.responder_name is not null)
       or (a.service_id is null and excluded.service_id is not null)
       or (a.service_name is null and excluded.service_name is not null)
    returning alert_id as "alertId", name, status, status_before as "statusBefore",
              service_name as "serviceName", responder_name as "responderName",
              case status when 'RESOLVED' then resolved_on when 'ACKNOWLEDGED' then acknowledged_on
                          else triggered_on end as at`;
  // A row written for the first time, or whose status this merge moved forward; a merge that only
  // filled in a field leaves status_before equal to status.
  return rows
    .filter((r) => r.statusBefore === null || r.statusBefore !== r.status)
    .map(({ statusBefore: _before, ...t }) => t);
}

/** An alert whose status a merge set: new, acknowledged or resolved. */
export interface AlertTransition {
  alertId: string;
  name: string;
  status: AlertStatus;
  serviceName: string | null;
  responderName: string | null;
  at: Date;
}

export interface AlertFilters {
  name?: string | undefined;
  service?: string | undefined;
  responder?: string | undefined;
  status?: AlertStatus | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

function whereOf(f: AlertFilters): SQL | undefined {
  return and(
    f.name === undefined ? undefined : eq(alerts.name, f.name),
    f.service === undefined ? undefined : eq(alerts.serviceName, f.service),
    f.responder === undefined ? undefined : eq(alerts.responderName, f.responder),
    f.status === undefined ? undefined : eq(alerts.status, f.status),
    f.from === undefined ? undefined : gte(alerts.triggeredOn, f.from),
    f.to === undefined ? undefined : lte(alerts.triggeredOn, f.to),
  );
}

export interface AlertView {
  alertId: string;
  name: string;
  status: AlertStatus;
  responder: { userId: string | null; name: string | null };
  service: { serviceId: string | null; name: string | null };
  triggeredOn: string;
  acknowledgedOn: string | null;
  resolvedOn: string | null;
  updatedAt: string;
}

type AlertRow = typeof alerts.$inferSelect;

const toView = (r: AlertRow): AlertView => ({
  alertId: r.alertId,
  name: r.name,
  status: r.status,
  responder: { userId: r.responderId, name: r.responderName },
  service: { serviceId: r.serviceId, name: r.serviceName },
  triggeredOn: r.triggeredOn.toISOString(),
  acknowledgedOn: r.acknowledgedOn?.toISOString() ?? null,
  resolvedOn: r.resolvedOn?.toISOString() ?? null,
  updatedAt: r.updatedAt.toISOString(),
});

export async function getAlert(db: Db, alertId: string): Promise<AlertView | undefined> {
  const [row] = await db.select().from(alerts).where(eq(alerts.alertId, alertId)).limit(1);
  return row && toView(row);
}

/** Keyset cursor: the (triggeredOn, alertId) of the last item served, opaque to clients. */
export interface AlertCursor {
  triggeredOn: Date;
  alertId: string;
}

export const encodeCursor = (c: AlertCursor): string =>
  Buffer.from(JSON.stringify([c.triggeredOn.toISOString(), c.alertId])).toString("base64url");

/** Returns undefined for a cursor this API did not issue. */
export function decodeCursor(raw: string): AlertCursor | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
    if (!Array.isArray(value) || value.length !== 2) return undefined;
    const [ts, id] = value as unknown[];
    if (typeof ts !== "string" || typeof id !== "string") return undefined;
    // Everything Postgres would refuse (NUL, a date outside its range) is a cursor we never issued.
    if (id.length === 0 || !hasNoNul(id)) return undefined;
    const triggeredOn = new Date(ts);
    return isStorableInstant(triggeredOn) ? { triggeredOn, alertId: id } : undefined;
  } catch {
    return undefined;
  }
}

/** Newest first (by triggeredOn, then alertId), `limit` items and the cursor for the next page. */
export async function listAlerts(
  db: Db,
  filters: AlertFilters,
  page: { limit: number; cursor?: AlertCursor | undefined },
): Promise<{ items: AlertView[]; nextCursor: string | null }> {
  const after = page.cursor
    ? or(
        lt(alerts.triggeredOn, page.cursor.triggeredOn),
        and(eq(alerts.triggeredOn, page.cursor.triggeredOn), lt(alerts.alertId, page.cursor.alertId)),
      )
    : undefined;
  const rows = await db
    .select()
    .from(alerts)
    .where(and(whereOf(filters), after))
    .orderBy(desc(alerts.triggeredOn), desc(alerts.alertId))
    .limit(page.limit + 1);
  const items = rows.slice(0, page.limit);
  const last = items.at(-1);
  const nextCursor =
    rows.length > page.limit && last
      ? encodeCursor({ triggeredOn: last.triggeredOn, alertId: last.alertId })
      : null;
  return { items: items.map(toView), nextCursor };
}

export interface DurationStats {
  count: number;
  min: number | null;
  mean: number | null;
  max: number | null;
  p50: number | null;
  p95: number | null;
}

export interface AlertStats {
  total: number;
  byStatus: Record<AlertStatus, number>;
  timeToAcknowledgeMs: DurationStats;
  timeToResolveMs: DurationStats;
}

export type AlertGroupBy = "service" | "responder";

const ms = (to: typeof alerts.acknowledgedOn | typeof alerts.resolvedOn) =>
  sql<number>`extract(epoch from (${to} - ${alerts.triggeredOn})) * 1000`;
const tta = ms(alerts.acknowledgedOn);
const ttr = ms(alerts.resolvedOn);
const num = (expr: SQL) => sql<number | null>`round((${expr})::numeric, 3)::float8`;

const durationColumns = (d: SQL<number>, prefix: string) => ({
  [`${prefix}Count`]: sql<number>`count(${d})::int`,
  [`${prefix}Min`]: num(sql`min(${d})`),
  [`${prefix}Mean`]: num(sql`avg(${d})`),
  [`${prefix}Max`]: num(sql`max(${d})`),
  [`${prefix}P50`]: num(sql`percentile_cont(0.5) within group (order by ${d})`),
  [`${prefix}P95`]: num(sql`percentile_cont(0.95) within group (order by ${d})`),
});

const statsColumns = {
  total: count(),
  triggered: sql<number>`count(*) filter (where ${alerts.status} = 'TRIGGERED')::int`,
  acknowledged: sql<number>`count(*) filter (where ${alerts.status} = 'ACKNOWLEDGED')::int`,
  resolved: sql<number>`count(*) filter (where ${alerts.status} = 'RESOLVED')::int`,
  ...durationColumns(tta, "tta"),
  ...durationColumns(ttr, "ttr"),
};

type StatsRow = Record<string, number | string | null>;

const durations = (r: StatsRow, prefix: string): DurationStats => ({
  count: Number(r[`${prefix}Count`] ?? 0),
  min: (r[`${prefix}Min`] as number | null) ?? null,
  mean: (r[`${prefix}Mean`] as number | null) ?? null,
  max: (r[`${prefix}Max`] as number | null) ?? null,
  p50: (r[`${prefix}P50`] as number | null) ?? null,
  p95: (r[`${prefix}P95`] as number | null) ?? null,
});

const toStats = (r: StatsRow): AlertStats => ({
  total: Number(r.total ?? 0),
  byStatus: {
    TRIGGERED: Number(r.triggered ?? 0),
    ACKNOWLEDGED: Number(r.acknowledged ?? 0),
    RESOLVED: Number(r.resolved ?? 0),
  },
  timeToAcknowledgeMs: durations(r, "tta"),
  timeToResolveMs: durations(r, "ttr"),
});

/** Counts and MTTA/MTTR figures, all computed in SQL; per group when `groupBy` is given. */
export async function alertStats(
  db: Db,
  filters: AlertFilters,
  groupBy?: AlertGroupBy,
): Promise<AlertStats & { groups?: (AlertStats & { key: string | null })[] }> {
  const [overall] = await db.select(statsColumns).from(alerts).where(whereOf(filters));
  const result = toStats((overall ?? {}) as StatsRow);
  if (!groupBy) return result;
  const key = groupBy === "service" ? alerts.serviceName : alerts.responderName;
  const rows = await db
    .select({ key, ...statsColumns })
    .from(alerts)
    .where(whereOf(filters))
    .groupBy(key)
    .orderBy(desc(count()), key);
  return { ...result, groups: rows.map((r) => ({ key: r.key, ...toStats(r as unknown as StatsRow) })) };
}
