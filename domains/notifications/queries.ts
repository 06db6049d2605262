// Notifications in Postgres (raw postgres.js): the outbox insert a producer makes inside its own
// transaction, the relay's move, and the inbox.
import type { TransactionSql } from "postgres";
import type { Sql } from "../../db/client.js";

export interface NotificationRow {
  id: number;
  accountId: string;
  type: string;
  data: unknown;
  createdAt: Date;
  readAt: Date | null;
  seq: number | null;
}

const COLUMNS = (sql: Sql | TransactionSql) =>
  sql`id, account_id as "accountId", type, data, created_at as "createdAt", read_at as "readAt", seq`;

/** Postgres' channel the outbox wakes the relay on (delivered at commit, never for a rollback). */
export const OUTBOX_CHANNEL = "conveyor_notifications_outbox";

export async function insertNotification(
  tx: Sql | TransactionSql,
  n: { accountId: string; type: string; data: unknown },
): Promise<number> {
  const [row] = await tx<{ id: number }[]>`
    insert into notifications (account_id, type, data)
    values (${n.accountId}, ${n.type}, ${tx.json(n.data as never)})
    returning id`;
  await tx`select pg_notify(${OUTBOX_CHANNEL}, '')`;
  return Number(row?.id);
}

/**
 * Records each announcement for every active account of `roles` that subscribes to its type (its
 * own choice in notification_subscriptions, else `subscribedByDefault`), in one statement.
 * Answers how many notifications it made.
 */
export async function insertAudienceNotifications(
  tx: Sql | TransactionSql,
  q: { type: string; roles: readonly string[]; subscribedByDefault: boolean; data: readonly unknown[] },
): Promise<number> {
  if (q.data.length === 0) return 0;
  const rows = await tx<{ id: number }[]>`
    insert into notifications (account_id, type, data)
    select a.id, ${q.type}, d.data
    from accounts a
    left join notification_subscriptions s on s.account_id = a.id and s.type = ${q.type}
    cross join jsonb_array_elements(${tx.json(q.data as never)}) with ordinality as d(data, n)
    where a.role = any(${q.roles as string[]}::account_role[]) and a.disabled_at is null
      and coalesce(s.subscribed, ${q.subscribedByDefault})
    order by d.n, a.id
    returning id`;
  if (rows.length > 0) await tx`select pg_notify(${OUTBOX_CHANNEL}, '')`;
  return rows.length;
}

/** The account's own choices about announced types. */
export async function subscriptionChoices(sql: Sql, accountId: string): Promise<Map<string, boolean>> {
  const rows = await sql<{ type: string; subscribed: boolean }[]>`
    select type, subscribed from notification_subscriptions where account_id = ${accountId}`;
  return new Map(rows.map((r) => [r.type, r.subscribed]));
}

export async function setSubscription(
  sql: Sql,
  q: { accountId: string; type: string; subscribed: boolean },
): Promise<void> {
  await sql`
    insert into notification_subscriptions (account_id, type, subscribed)
    values (${q.accountId}, ${q.type}, ${q.subscribed})
    on conflict (account_id, type) do update set subscribed = excluded.subscribed, updated_at = now()`;
}

/**
 * Moves up to `limit` committed notifications out of the outbox, numbering them in relay order,
 * one relay at a time (an advisory lock), and hands them to `enqueue` inside the same
 * transaction: if the enqueue fails, they stay in the outbox. A row enqueued and then left in the
 * outbox by a crash is enqueued again under the same job id, which the queue ignores.
 */
export async function relayOutbox(
  sql: Sql,
  limit: number,
  enqueue: (ids: number[]) => Promise<void>,
): Promise<number> {
  return sql.begin(async (tx) => {
    const [locked] = await tx<{ locked: boolean }[]>`
      select pg_try_advisory_xact_lock(hashtext('conveyor:notifications:relay')) as locked`;
    if (!locked?.locked) return 0;
    const rows = await tx<{ id: number }[]>`
      update notifications set relayed_at = now(), seq = nextval('notifications_relay_seq')
      where id in (
        select id from notifications where relayed_at is null order by id limit ${limit} for update skip locked
      )
      returning id`;
    if (rows.length === 0) return 0;
    await enqueue(rows.map((r) => Number(r.id)).sort((a, b) => a - b));
    return rows.length;
  });
}

export async function findNotification(sql: Sql, id: number): Promise<NotificationRow | undefined> {
  const [row] = await sql<NotificationRow[]>`select ${COLUMNS(sql)} from notifications where id = ${id}`;
  return row;
}

/** An account's relayed notifications, newest first, before id `before`, unread ones only if asked. */
export async function listNotifications(
  sql: Sql,
  q: { accountId: string; unread: boolean; before?: number | undefined; limit: number },
): Promise<NotificationRow[]> {
  return sql<NotificationRow[]>`
    select ${COLUMNS(sql)} from notifications
    where account_id = ${q.accountId} and relayed_at is not null
      ${q.unread ? sql`and read_at is null` : sql``}
      ${q.before === undefined ? sql`` : sql`and id < ${q.before}`}
    order by id desc limit ${q.limit}`;
}

/** An account's notifications relayed after relay number `afterSeq`, in relay order. */
export async function notificationsAfter(
  sql: Sql,
  q: { accountId: string; afterSeq: number; limit: number },
): Promise<NotificationRow[]> {
  return sql<NotificationRow[]>`
    select ${COLUMNS(sql)} from notifications
    where account_id = ${q.accountId} and seq > ${q.afterSeq}
    order by seq limit ${q.limit}`;
}

/** Marks one notification (`id`) or all of an account's read; answers how many changed. */
export async function markRead(sql: Sql, q: { accountId: string; id?: number | undefined }): Promise<number> {
  const rows = await sql`
    update notifications set read_at = now()
    where account_id = ${q.accountId} and read_at is null and relayed_at is not null
      ${q.id === undefined ? sql`` : sql`and id = ${q.id}`}
    returning id`;
  return rows.length;
}
