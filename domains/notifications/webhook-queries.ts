// Webhooks in Postgres (raw postgres.js): endpoints (secrets sealed), deliveries and attempts.
import type { TransactionSql } from "postgres";
import type { Sql } from "../../db/client.js";

export interface EndpointRow {
  id: string;
  accountId: string;
  url: string;
  types: string[];
  secretSealed: string;
  previousSecretSealed: string | null;
  previousSecretExpiresAt: Date | null;
  disabledAt: Date | null;
  disabledReason: string | null;
  createdAt: Date;
}

export interface DeliveryRow {
  id: string;
  endpointId: string;
  notificationId: number | null;
  type: string;
  payload: unknown;
  state: "pending" | "succeeded" | "dead";
  attempts: number;
  nextAttemptAt: Date | null;
  lastStatus: number | null;
  createdAt: Date;
}

export interface AttemptRow {
  status: number | null;
  error: string | null;
  durationMs: number;
  responseExcerpt: string | null;
  at: Date;
}

type Db = Sql | TransactionSql;

const ENDPOINT = (sql: Db) => sql`
  id, account_id as "accountId", url, types, secret_sealed as "secretSealed",
  previous_secret_sealed as "previousSecretSealed", previous_secret_expires_at as "previousSecretExpiresAt",
  disabled_at as "disabledAt", disabled_reason as "disabledReason", created_at as "createdAt"`;

const DELIVERY = (sql: Db) => sql`
  id, endpoint_id as "endpointId", notification_id as "notificationId", type, payload, state, attempts,
  next_attempt_at as "nextAttemptAt", last_status as "lastStatus", created_at as "createdAt"`;

export async function insertEndpoint(
  sql: Db,
  e: { id: string; accountId: string; url: string; types: string[]; secretSealed: string },
): Promise<EndpointRow> {
  const [row] = await sql<EndpointRow[]>`
    insert into webhook_endpoints (id, account_id, url, types, secret_sealed)
    values (${e.id}, ${e.accountId}, ${e.url}, ${sql.array(e.types)}, ${e.secretSealed})
    returning ${ENDPOINT(sql)}`;
  return row as EndpointRow;
}

/** The account's endpoint `id`, or undefined (another account's endpoint included). */
export async function findEndpoint(sql: Db, accountId: string, id: string): Promise<EndpointRow | undefined> {
  const [row] = await sql<EndpointRow[]>`
    select ${ENDPOINT(sql)} from webhook_endpoints where id = ${id} and account_id = ${accountId}`;
  return row;
}

export const listEndpoints = (sql: Db, accountId: string) => sql<EndpointRow[]>`
  select ${ENDPOINT(sql)} from webhook_endpoints where account_id = ${accountId} order by created_at, id`;

/** The account's enabled endpoints that take notifications of `type`. */
export const endpointsFor = (sql: Db, accountId: string, type: string) => sql<EndpointRow[]>`
  select ${ENDPOINT(sql)} from webhook_endpoints
  where account_id = ${accountId} and disabled_at is null
    and (cardinality(types) = 0 or ${type} = any(types))`;

export async function updateEndpoint(
  sql: Db,
  accountId: string,
  id: string,
  change: { url?: string | undefined; types?: string[] | undefined; disabled?: boolean | undefined },
): Promise<EndpointRow | undefined> {
  const [row] = await sql<EndpointRow[]>`
    update webhook_endpoints set
      url = coalesce(${change.url ?? null}, url),
      types = ${change.types === undefined ? sql`types` : sql`${sql.array(change.types)}::text[]`},
      disabled_at = ${
        change.disabled === undefined
          ? sql`disabled_at`
          : change.disabled
            ? sql`coalesce(disabled_at, now())`
            : sql`null`
      },
      disabled_reason = ${
        change.disabled === undefined
          ? sql`disabled_reason`
          : change.disabled
            ? sql`coalesce(disabled_reason, 'disabled by its owner')`
            : sql`null`
      }
    where id = ${id} and account_id = ${accountId}
    returning ${ENDPOINT(sql)}`;
  return row;
}

export async function rotateSecret(
  sql: Db,
  accountId: string,
  id: string,
  secretSealed: string,
  previousSealed: string | null,
  overlapSeconds: number,
): Promise<boolean> {
  const rows = await sql`
    update webhook_endpoints set
      secret_sealed = ${secretSealed},
      previous_secret_sealed = ${previousSealed},
      previous_secret_expires_at = ${previousSealed === null ? null : sql`now() + make_interval(secs => ${overlapSeconds})`}
    where id = ${id} and account_id = ${accountId}
    returning id`;
  return rows.length > 0;
}

export async function disableEndpoint(sql: Db, id: string, reason: string): Promise<boolean> {
  const rows = await sql`
    update webhook_endpoints set disabled_at = now(), disabled_reason = ${reason}
    where id = ${id} and disabled_at is null
    returning id`;
  return rows.length > 0;
}

/**
 * Whether the endpoint has been failing for `seconds`: it is at least that old, and no attempt
 * at it has succeeded in that time.
 */
export async function failingFor(sql: Db, endpointId: string, seconds: number): Promise<boolean> {
  const [row] = await sql<{ failing: boolean }[]>`
    select e.created_at <= now() - make_interval(secs => ${seconds}) and not exists (
      select 1 from webhook_attempts a join webhook_deliveries d on d.id = a.delivery_id
      where d.endpoint_id = e.id and a.status between 200 and 299
        and a.at > now() - make_interval(secs => ${seconds})
    ) as failing
    from webhook_endpoints e where e.id = ${endpointId}`;
  return row?.failing ?? false;
}

/** Deletes the account's endpoint `id` and, with it, its deliveries and their attempts. */
export async function deleteEndpoint(sql: Db, accountId: string, id: string): Promise<boolean> {
  const rows =
    await sql`delete from webhook_endpoints where id = ${id} and account_id = ${accountId} returning id`;
  return rows.length > 0;
}

/** Inserts deliveries (one per notification and endpoint: a repeat is ignored); answers the pending ones. */
export async function insertDeliveries(
  sql: Db,
  rows: { id: string; endpointId: string; notificationId: number | null; type: string; payload: unknown }[],
): Promise<DeliveryRow[]> {
  const made: DeliveryRow[] = [];
  for (const r of rows) {
    const [row] = await sql<DeliveryRow[]>`
      insert into webhook_deliveries (id, endpoint_id, notification_id, type, payload)
      values (${r.id}, ${r.endpointId}, ${r.notificationId}, ${r.type}, ${sql.json(r.payload as never)})
      on conflict (endpoint_id, notification_id) do update set type = excluded.type
      returning ${DELIVERY(sql)}`;
    if (row && row.state === "pending" && row.attempts === 0) made.push(row);
  }
  return made;
}

export async function findDelivery(
  sql: Db,
  id: string,
): Promise<{ delivery: DeliveryRow; endpoint: EndpointRow } | undefined> {
  const [delivery] = await sql<
    DeliveryRow[]
  >`select ${DELIVERY(sql)} from webhook_deliveries where id = ${id}`;
  if (!delivery) return undefined;
  const [endpoint] = await sql<EndpointRow[]>`
    select ${ENDPOINT(sql)} from webhook_endpoints where id = ${delivery.endpointId}`;
  return endpoint && { delivery, endpoint };
}

export const listDeliveries = (sql: Db, endpointId: string, limit: number) => sql<DeliveryRow[]>`
  select ${DELIVERY(sql)} from webhook_deliveries where endpoint_id = ${endpointId}
  order by created_at desc, id desc limit ${limit}`;

export const attemptsOf = (sql: Db, deliveryIds: string[]) => sql<(AttemptRow & { deliveryId: string })[]>`
  select delivery_id as "deliveryId", status, error, duration_ms as "durationMs",
    response_excerpt as "responseExcerpt", at
  from webhook_attempts where delivery_id = any(${sql.array(deliveryIds)}) order by id`;

/** Records one attempt and its outcome on the delivery, in one transaction. */
export async function recordAttempt(
  sql: Sql,
  deliveryId: string,
  attempt: {
    status: number | null;
    error: string | null;
    durationMs: number;
    responseExcerpt: string | null;
  },
  outcome: { state: DeliveryRow["state"]; nextAttemptAt: Date | null },
): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`
      insert into webhook_attempts (delivery_id, status, error, duration_ms, response_excerpt)
      values (${deliveryId}, ${attempt.status}, ${attempt.error}, ${attempt.durationMs}, ${attempt.responseExcerpt})`;
    await tx`
      update webhook_deliveries set attempts = attempts + 1, state = ${outcome.state},
        next_attempt_at = ${outcome.nextAttemptAt}, last_status = ${attempt.status}
      where id = ${deliveryId}`;
  });
}

export async function markDead(sql: Db, deliveryId: string): Promise<void> {
  await sql`update webhook_deliveries set state = 'dead', next_attempt_at = null where id = ${deliveryId} and state = 'pending'`;
}

/** Makes the endpoint's dead delivery `id` pending again; answers its attempts so far, or undefined. */
export async function reviveDelivery(sql: Db, endpointId: string, id: string): Promise<number | undefined> {
  const [row] = await sql<{ attempts: number }[]>`
    update webhook_deliveries set state = 'pending', next_attempt_at = now()
    where id = ${id} and endpoint_id = ${endpointId} and state = 'dead'
    returning attempts`;
  return row?.attempts;
}

/** The endpoint's dead deliveries created since `since`, oldest first, at most `limit`. */
export async function deadDeliveriesSince(
  sql: Db,
  endpointId: string,
  since: Date,
  limit: number,
): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select id from webhook_deliveries
    where endpoint_id = ${endpointId} and state = 'dead' and created_at >= ${since}
    order by created_at, id limit ${limit}`;
  return rows.map((r) => r.id);
}

export async function deliveryState(sql: Db, endpointId: string, id: string): Promise<string | undefined> {
  const [row] = await sql<{ state: string }[]>`
    select state from webhook_deliveries where id = ${id} and endpoint_id = ${endpointId}`;
  return row?.state;
}
