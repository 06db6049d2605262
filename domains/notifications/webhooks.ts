// Webhooks: an account's endpoints receive its notifications over HTTP, as the Standard Webhooks
// spec says (webhook-id, webhook-timestamp, webhook-signature). The publish job makes one
// delivery per matching enabled endpoint and enqueues a `notifications.deliver` job for it (job
// id = delivery id); the deliver job POSTs it, records the attempt, and on failure enqueues the
// next attempt, delayed by WEBHOOKS_RETRY_SCHEDULE, until the last one: then the delivery is
// dead. A 410 disables the endpoint. Secrets rest sealed in Postgres; a job carries only the
// delivery's id.

import { AppError } from "../../lib/errors.js";
import { randomId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { createSealKeyRing, decodeKey, open, type SealKeyRing, seal, subKey } from "../../lib/sealing.js";
import { notificationsQueue } from "../../queues/notifications.js";
import type { Connections } from "../connections.js";
import type { NotificationsConfig } from "./config.js";
import { insertNotification, type NotificationRow } from "./queries.js";
import { NOTIFICATION_TYPES } from "./types.js";
import {
  type AddressPolicy,
  parseWebhookUrl,
  type Resolver,
  resolveWebhookAddress,
  systemResolver,
} from "./webhook-address.js";
import {
  type AttemptRow,
  attemptsOf,
  type DeliveryRow,
  deadDeliveriesSince,
  deleteEndpoint,
  deliveryState,
  disableEndpoint,
  type EndpointRow,
  endpointsFor,
  failingFor,
  findDelivery,
  findEndpoint,
  insertDeliveries,
  insertEndpoint,
  listDeliveries,
  listEndpoints,
  markDead,
  recordAttempt,
  reviveDelivery,
  rotateSecret,
  updateEndpoint,
} from "./webhook-queries.js";
import { generateSecret, type SendResult, send, webhookHeaders } from "./webhook-send.js";

/** A delivery that finds its endpoint at its in-flight limit waits this long and tries again. */
const IN_FLIGHT_WAIT_MS = 500;
/** An in-flight count outlives a crashed worker by this much at most (a send takes 10 s at most). */
const IN_FLIGHT_TTL_SECONDS = 60;

export interface EndpointView {
  id: string;
  url: string;
  types: string[];
  disabled: boolean;
  disabledAt: string | null;
  disabledReason: string | null;
  /** When the previous secret stops signing (after a rotation), or null. */
  previousSecretExpiresAt: string | null;
  createdAt: string;
}

export interface DeliveryView {
  id: string;
  notificationId: number | null;
  type: string;
  state: DeliveryRow["state"];
  attempts: number;
  nextAttemptAt: string | null;
  lastStatus: number | null;
  createdAt: string;
  history: {
    status: number | null;
    error: string | null;
    durationMs: number;
    responseExcerpt: string | null;
    at: string;
  }[];
}

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

const endpointView = (e: EndpointRow): EndpointView => ({
  id: e.id,
  url: e.url,
  types: e.types,
  disabled: e.disabledAt !== null,
  disabledAt: iso(e.disabledAt),
  disabledReason: e.disabledReason,
  previousSecretExpiresAt:
    e.previousSecretExpiresAt && new Date(e.previousSecretExpiresAt) > new Date()
      ? iso(e.previousSecretExpiresAt)
      : null,
  createdAt: iso(e.createdAt) as string,
});

const attemptView = (a: AttemptRow) => ({
  status: a.status,
  error: a.error,
  durationMs: a.durationMs,
  responseExcerpt: a.responseExcerpt,
  at: iso(a.at) as string,
});

export type WebhooksConfig = NotificationsConfig & {
  ACCOUNT_DATA_KEY?: string | undefined;
  NODE_ENV: "development" | "production" | "test";
  QUEUE_PREFIX: string;
};

export type WebhooksService = ReturnType<typeof createWebhooksService>;

/** Dead deliveries one recovery sends again. */
const RECOVER_MAX = 10_000;

export function createWebhooksService(
  config: WebhooksConfig,
  { database, redis, queues, logger }: Pick<Connections, "database" | "redis" | "queues" | "logger">,
  options: { resolve?: Resolver; now?: () => Date } = {},
) {
  const sql = database.sql;
  // The clock: what signs (webhook-timestamp), schedules retries and ends a rotation's overlap.
  const now = options.now ?? (() => new Date());
  const policy: AddressPolicy = {
    allowPrivate: config.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES,
    httpsOnly: config.NODE_ENV === "production",
    resolve: options.resolve ?? systemResolver,
  };
  const schedule = config.WEBHOOKS_RETRY_SCHEDULE;

  // Built on first use, as identity's keys are: only a process that touches webhooks needs the key.
  let ring: SealKeyRing | undefined;
  function keys(): SealKeyRing {
    if (ring) return ring;
    if (config.ACCOUNT_DATA_KEY === undefined)
      throw new AppError("INTERNAL", "webhooks are not configured on this server (ACCOUNT_DATA_KEY)");
    ring = createSealKeyRing(
      subKey(decodeKey(config.ACCOUNT_DATA_KEY), "conveyor/notifications/webhooks/seal/v1"),
    );
    return ring;
  }
  const context = (endpointId: string) => `conveyor/notifications/webhook-secret/${endpointId}`;
  const sealSecret = (endpointId: string, secret: string) => seal(keys(), secret, context(endpointId));
  const openSecret = (endpointId: string, sealed: string) =>
    open(keys(), sealed, context(endpointId)).toString("utf8");

  /** The secrets that sign now: the current one, and the previous one during a rotation's overlap. */
  function activeSecrets(e: EndpointRow): string[] {
    const secrets = [openSecret(e.id, e.secretSealed)];
    if (e.previousSecretSealed && e.previousSecretExpiresAt && new Date(e.previousSecretExpiresAt) > now())
      secrets.push(openSecret(e.id, e.previousSecretSealed));
    return secrets;
  }

  async function checkedUrl(raw: string): Promise<string> {
    const url = parseWebhookUrl(raw, policy);
    await resolveWebhookAddress(url, policy);
    return url.toString();
  }

  /** Disables an endpoint and tells its owner, in one transaction (the outbox). */
  async function disableAndTell(endpoint: EndpointRow, reason: string): Promise<void> {
    await sql.begin(async (tx) => {
      if (!(await disableEndpoint(tx, endpoint.id, reason))) return;
      await insertNotification(tx, {
        accountId: endpoint.accountId,
        type: "webhook.disabled",
        data: NOTIFICATION_TYPES["webhook.disabled"].schema.parse({
          endpointId: endpoint.id,
          url: endpoint.url,
          reason,
        }),
      });
    });
  }

  async function ownEndpoint(accountId: string, id: string): Promise<EndpointRow> {
    const e = await findEndpoint(sql, accountId, id);
    if (!e) throw new AppError("NOT_FOUND", `no webhook endpoint ${id}`);
    return e;
  }

  const jobId = (deliveryId: string, attempt: number) =>
    attempt === 1 ? deliveryId : `${deliveryId}.a${attempt}`;

  async function enqueueDelivery(
    deliveryId: string,
    attempt: number,
    delayMs = 0,
    id = jobId(deliveryId, attempt),
  ) {
    await queues
      .get(notificationsQueue.name)
      .add(
        "notifications.deliver",
        { deliveryId, attempt },
        { ...notificationsQueue.defaultJobOptions, jobId: id, delay: delayMs },
      );
  }

  async function createDeliveries(
    endpoints: EndpointRow[],
    n: { notificationId: number | null; type: string; data: unknown; at: Date },
  ): Promise<DeliveryRow[]> {
    if (endpoints.length === 0) return [];
    const payload = { type: n.type, timestamp: n.at.toISOString(), data: n.data };
    const made = await insertDeliveries(
      sql,
      endpoints.map((e) => ({
        id: randomId("msg_"),
        endpointId: e.id,
        notificationId: n.notificationId,
        type: n.type,
        payload,
      })),
    );
    for (const d of made) await enqueueDelivery(d.id, 1);
    return made;
  }

  // ---- In flight per endpoint, across every worker (a Redis counter) ----------------------------
  const inFlightKey = (endpointId: string) => `${config.QUEUE_PREFIX}:webhooks:in-flight:${endpointId}`;
  async function acquire(endpointId: string): Promise<boolean> {
    const key = inFlightKey(endpointId);
    const [[, n]] = (await redis.multi().incr(key).expire(key, IN_FLIGHT_TTL_SECONDS).exec()) as [
      [null, number],
    ];
    if (n <= config.WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT) return true;
    await redis.decr(key);
    return false;
  }
  const release = (endpointId: string) => redis.decr(inFlightKey(endpointId)).catch(() => 0);

  /** One POST of the delivery, to the address its endpoint's host resolves to now (checked again). */
  async function sendOnce(endpoint: EndpointRow, delivery: DeliveryRow): Promise<SendResult> {
    const url = new URL(endpoint.url);
    let address: string;
    try {
      address = await resolveWebhookAddress(url, policy);
    } catch (err) {
      return { status: null, error: (err as Error).message, durationMs: 0 };
    }
    const body = JSON.stringify(delivery.payload);
    const timestamp = Math.floor(now().getTime() / 1000);
    return send(url, address, webhookHeaders(activeSecrets(endpoint), delivery.id, timestamp, body), body);
  }

  return {
    /** Registers an endpoint; answers it with its secret, which is shown this once. */
    async create(accountId: string, input: { url: string; types?: string[] | undefined }) {
      const url = await checkedUrl(input.url);
      const id = randomId("whep_");
      const secret = generateSecret();
      const row = await insertEndpoint(sql, {
        id,
        accountId,
        url,
        types: [...new Set(input.types ?? [])],
        secretSealed: sealSecret(id, secret),
      });
      return { ...endpointView(row), secret };
    },

    list: async (accountId: string) => (await listEndpoints(sql, accountId)).map(endpointView),

    get: async (accountId: string, id: string) => endpointView(await ownEndpoint(accountId, id)),

    async update(
      accountId: string,
      id: string,
      change: { url?: string | undefined; types?: string[] | undefined; disabled?: boolean | undefined },
    ) {
      await ownEndpoint(accountId, id);
      const url = change.url === undefined ? undefined : await checkedUrl(change.url);
      const row = await updateEndpoint(sql, accountId, id, {
        ...change,
        url,
        types: change.types && [...new Set(change.types)],
      });
      if (!row) throw new AppError("NOT_FOUND", `no webhook endpoint ${id}`);
      return endpointView(row);
    },

    async remove(accountId: string, id: string): Promise<void> {
      if (!(await deleteEndpoint(sql, accountId, id)))
        throw new AppError("NOT_FOUND", `no webhook endpoint ${id}`);
    },

    /**
     * A new secret, shown this once. The previous one keeps signing beside it for
     * `overlapSeconds` (both signatures in webhook-signature), so receivers can switch over.
     */
    async rotateSecret(accountId: string, id: string, overlapSeconds: number) {
      const e = await ownEndpoint(accountId, id);
      const secret = generateSecret();
      const previous = overlapSeconds > 0 ? e.secretSealed : null;
      if (!(await rotateSecret(sql, accountId, id, sealSecret(id, secret), previous, overlapSeconds)))
        throw new AppError("NOT_FOUND", `no webhook endpoint ${id}`);
      return { ...endpointView(await ownEndpoint(accountId, id)), secret };
    },

    /** The endpoint's latest deliveries, newest first, with their attempts. */
    async deliveries(accountId: string, id: string, limit: number): Promise<DeliveryView[]> {
      await ownEndpoint(accountId, id);
      const rows = await listDeliveries(sql, id, limit);
      const attempts =
        rows.length === 0
          ? []
          : await attemptsOf(
              sql,
              rows.map((d) => d.id),
            );
      return rows.map((d) => ({
        id: d.id,
        notificationId: d.notificationId === null ? null : Number(d.notificationId),
        type: d.type,
        state: d.state,
        attempts: d.attempts,
        nextAttemptAt: iso(d.nextAttemptAt),
        lastStatus: d.lastStatus,
        createdAt: iso(d.createdAt) as string,
        history: attempts.filter((a) => a.deliveryId === d.id).map(attemptView),
      }));
    },

    /**
     * Tries a dead delivery once more (a redrive), under the same webhook-id; if that attempt
     * fails it is dead again. CONFLICT when the delivery is not dead.
     */
    async redeliver(accountId: string, id: string, deliveryId: string): Promise<void> {
      await ownEndpoint(accountId, id);
      const attempts = await reviveDelivery(sql, id, deliveryId);
      if (attempts === undefined) {
        const state = await deliveryState(sql, id, deliveryId);
        if (state === undefined) throw new AppError("NOT_FOUND", `no delivery ${deliveryId} of ${id}`);
        throw new AppError("CONFLICT", `delivery ${deliveryId} is ${state}; only a dead one is sent again`);
      }
      await enqueueDelivery(deliveryId, attempts + 1, 0, `${deliveryId}.r${randomId()}`);
    },

    /**
     * Sends every dead delivery of the endpoint created since `since` once more (a recovery after
     * an outage of the receiver), each under its own webhook-id; answers how many (at most
     * RECOVER_MAX: call again for more).
     */
    async recover(accountId: string, id: string, since: Date): Promise<number> {
      await ownEndpoint(accountId, id);
      let redriven = 0;
      for (const deliveryId of await deadDeliveriesSince(sql, id, since, RECOVER_MAX)) {
        const attempts = await reviveDelivery(sql, id, deliveryId);
        if (attempts === undefined) continue; // redriven meanwhile
        await enqueueDelivery(deliveryId, attempts + 1, 0, `${deliveryId}.r${randomId()}`);
        redriven++;
      }
      return redriven;
    },

    /** Sends a `test.ping` to one endpoint (disabled or not); answers the delivery's id. */
    async test(accountId: string, id: string): Promise<{ deliveryId: string }> {
      const e = await ownEndpoint(accountId, id);
      const [d] = await createDeliveries([e], {
        notificationId: null,
        type: "test.ping",
        data: { message: "a test from Conveyor" },
        at: now(),
      });
      return { deliveryId: (d as DeliveryRow).id };
    },

    /** One delivery per matching enabled endpoint of the notification's account (the publish job). */
    async fanOut(n: NotificationRow): Promise<number> {
      const endpoints = await endpointsFor(sql, n.accountId, n.type);
      const made = await createDeliveries(endpoints, {
        notificationId: Number(n.id),
        type: n.type,
        data: n.data,
        at: n.createdAt,
      });
      return made.length;
    },

    /** Attempt `attempt` of delivery `deliveryId` (the `notifications.deliver` job). */
    async deliver(
      deliveryId: string,
      attempt: number,
      log: Logger = logger,
    ): Promise<"succeeded" | "retrying" | "dead" | "disabled" | "waiting" | "skipped" | "gone"> {
      const found = await findDelivery(sql, deliveryId);
      if (!found) return "gone";
      const { delivery, endpoint } = found;
      // Done already, or this attempt already ran (a job retried after its record).
      if (delivery.state !== "pending" || delivery.attempts >= attempt) return "skipped";
      if (endpoint.disabledAt !== null && delivery.notificationId !== null) {
        await markDead(sql, deliveryId);
        return "dead";
      }
      if (!(await acquire(endpoint.id))) {
        await enqueueDelivery(
          deliveryId,
          attempt,
          IN_FLIGHT_WAIT_MS,
          `${jobId(deliveryId, attempt)}.w${randomId()}`,
        );
        return "waiting";
      }
      let result: SendResult;
      try {
        result = await sendOnce(endpoint, delivery);
      } finally {
        await release(endpoint.id);
      }
      const ok = result.status !== null && result.status >= 200 && result.status < 300;
      const gone = result.status === 410;
      const delaySeconds = schedule[attempt - 1];
      const retry = !ok && !gone && delaySeconds !== undefined;
      const nextAttemptAt = retry ? new Date(now().getTime() + delaySeconds * 1000) : null;
      // The next attempt is enqueued before this one is recorded: a crash in between repeats this
      // attempt (at least once), and never loses the delivery.
      if (retry) await enqueueDelivery(deliveryId, attempt + 1, delaySeconds * 1000);
      await recordAttempt(
        sql,
        deliveryId,
        {
          status: result.status,
          error: result.status === null ? result.error : null,
          durationMs: result.durationMs,
          responseExcerpt: result.status === null ? null : result.excerpt,
        },
        { state: ok ? "succeeded" : retry ? "pending" : "dead", nextAttemptAt },
      );
      if (gone) {
        await disableAndTell(endpoint, "the endpoint answered 410 Gone");
        log.info({ endpointId: endpoint.id, deliveryId }, "webhook endpoint answered 410; disabled");
        return "disabled";
      }
      if (!ok)
        log.info(
          { endpointId: endpoint.id, deliveryId, attempt, status: result.status, retry },
          retry ? "webhook delivery failed; will retry" : "webhook delivery failed for good",
        );
      if (
        !ok &&
        !retry &&
        (await failingFor(sql, endpoint.id, config.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS))
      ) {
        const days = Math.round(config.WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS / 86_400);
        await disableAndTell(endpoint, `no delivery succeeded for ${days} day(s)`);
        log.warn({ endpointId: endpoint.id }, "webhook endpoint failing continuously; disabled");
        return "disabled";
      }
      return ok ? "succeeded" : retry ? "retrying" : "dead";
    },
  };
}
