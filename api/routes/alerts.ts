// Alerts: event ingestion (enqueue only; the `alert-ingestion` worker merges into Postgres),
// queries with filters and cursor pagination, and MTTA/MTTR statistics computed in SQL.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { ALERT_STATUSES } from "../../db/schema/alerts.js";
import { type AlertFilters, decodeCursor } from "../../domains/alerts/queries.js";
import { tenantOf } from "../../domains/identity/caller.js";
import { type Access, ANY_ROLE, guardedRoute, OPERATORS } from "../../http/access.js";
import type { AppEnv } from "../../http/context.js";
import { AppError, serviceUnavailable } from "../../lib/errors.js";
import { pgInstant, pgText } from "../../lib/postgres-values.js";
import { alertEventSchema, alertIngestionQueue } from "../../queues/alert-ingestion.js";
import { accepted, submitJob } from "../job-submission.js";
import { errorResponses, jobSubmissionHeaders, jobSubmissionResponses, validationHook } from "../openapi.js";

const filterQuery = {
  name: pgText().min(1).optional().openapi({ description: "Exact alert name" }),
  service: pgText().min(1).optional().openapi({ description: "Exact service name" }),
  responder: pgText().min(1).optional().openapi({ description: "Exact responder name" }),
  status: z.enum(ALERT_STATUSES).optional().openapi({ description: "Current (derived) status" }),
  from: pgInstant().optional().openapi({ description: "triggeredOn ≥ from (ISO-8601)" }),
  to: pgInstant().optional().openapi({ description: "triggeredOn ≤ to (ISO-8601)" }),
};

const filtersOf = (q: { [K in keyof typeof filterQuery]?: string }): AlertFilters => ({
  name: q.name,
  service: q.service,
  responder: q.responder,
  status: q.status as AlertFilters["status"],
  from: q.from === undefined ? undefined : new Date(q.from),
  to: q.to === undefined ? undefined : new Date(q.to),
});

const alertSchema = z
  .object({
    alertId: z.string(),
    name: z.string(),
    status: z.enum(ALERT_STATUSES),
    responder: z.object({ userId: z.string().nullable(), name: z.string().nullable() }),
    service: z.object({ serviceId: z.string().nullable(), name: z.string().nullable() }),
    triggeredOn: z.string(),
    acknowledgedOn: z.string().nullable(),
    resolvedOn: z.string().nullable(),
    updatedAt: z.string(),
  })
  .openapi("Alert");

const durationSchema = z.object({
  count: z.number().int(),
  min: z.number().nullable(),
  mean: z.number().nullable(),
  max: z.number().nullable(),
  p50: z.number().nullable(),
  p95: z.number().nullable(),
});

const statsFields = {
  total: z.number().int(),
  byStatus: z.object({
    TRIGGERED: z.number().int(),
    ACKNOWLEDGED: z.number().int(),
    RESOLVED: z.number().int(),
  }),
  timeToAcknowledgeMs: durationSchema,
  timeToResolveMs: durationSchema,
};
const statsSchema = z
  .object({
    ...statsFields,
    groups: z.array(z.object({ key: z.string().nullable(), ...statsFields })).optional(),
  })
  .openapi("AlertStats");

/**
 * The stock emitter sends no credentials: anyone may post events unless ALERTS_INGEST_TOKEN is
 * set (then that Bearer token); accounts of any role may post with their own credentials.
 */
const INGEST_ACCESS: Access = { roles: ANY_ROLE, anonymous: "alert-emitters" };
/** Alerts and their statistics are for operators (and the operator dashboard). */
const READ_ACCESS: Access = { roles: OPERATORS };

const postEvent = guardedRoute(INGEST_ACCESS, {
  method: "post",
  path: "/v1/alerts/events",
  tags: ["alerts"],
  summary: "Ingest one alert event (ALERT_CREATED or ALERT_CHANGED)",
  description:
    "Validates the event and enqueues it on `alert-ingestion`; the alert is queryable within a second. " +
    "When ALERTS_INGEST_TOKEN is configured, `Authorization: Bearer <token>` is required.",
  request: {
    headers: jobSubmissionHeaders,
    body: { required: true, content: { "application/json": { schema: alertEventSchema } } },
  },
  responses: {
    ...jobSubmissionResponses,
    ...errorResponses(400, 413, 415),
  },
});

const listRoute = guardedRoute(READ_ACCESS, {
  method: "get",
  path: "/v1/alerts",
  tags: ["alerts"],
  summary: "Alerts, newest first (by triggeredOn), with filters and cursor pagination",
  request: {
    query: z.object({
      ...filterQuery,
      limit: z.coerce.number().int().min(1).max(500).default(50),
      cursor: z.string().max(1024).optional().openapi({ description: "nextCursor of the previous page" }),
    }),
  },
  responses: {
    200: {
      description: "A page of alerts",
      content: {
        "application/json": {
          schema: z.object({ items: z.array(alertSchema), nextCursor: z.string().nullable() }),
        },
      },
    },
    ...errorResponses(400),
  },
});

const statsRoute = guardedRoute(READ_ACCESS, {
  method: "get",
  path: "/v1/alerts/stats",
  tags: ["alerts"],
  summary:
    "Counts by status and time to acknowledge / resolve (min, mean, max, p50, p95), optionally per group",
  request: {
    query: z.object({ ...filterQuery, groupBy: z.enum(["service", "responder"]).optional() }),
  },
  responses: {
    200: { description: "Statistics", content: { "application/json": { schema: statsSchema } } },
    ...errorResponses(400),
  },
});

const getRoute = guardedRoute(READ_ACCESS, {
  method: "get",
  path: "/v1/alerts/{alertId}",
  tags: ["alerts"],
  summary: "One alert by id",
  request: { params: z.object({ alertId: pgText().min(1).max(256) }) },
  responses: {
    200: { description: "The alert", content: { "application/json": { schema: alertSchema } } },
    ...errorResponses(404),
  },
});

export const alertsRoutes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

alertsRoutes
  .openapi(postEvent, async (c) => {
    const event = c.req.valid("json");
    // Idempotency-Key and Prefer: wait are about a job of one's own: the job contract's path.
    if (c.req.header("Idempotency-Key") !== undefined || c.req.header("Prefer") !== undefined)
      return submitJob(c, { contract: alertIngestionQueue, name: "alerts.ingest", payload: event });
    if (c.get("deps").redis.status !== "ready") throw serviceUnavailable("Redis");
    const jobId = await c.get("services").alerts.submit(event, tenantOf(c.get("caller")));
    return accepted(c, alertIngestionQueue.name, jobId);
  })
  .openapi(listRoute, async (c) => {
    const q = c.req.valid("query");
    const cursor = q.cursor === undefined ? undefined : decodeCursor(q.cursor);
    if (q.cursor !== undefined && !cursor)
      throw new AppError("VALIDATION_FAILED", "cursor is not one this API issued");
    const page = await c.get("services").alerts.list(filtersOf(q), { limit: q.limit, cursor });
    return c.json(page, 200);
  })
  .openapi(statsRoute, async (c) => {
    const q = c.req.valid("query");
    return c.json(await c.get("services").alerts.stats(filtersOf(q), q.groupBy), 200);
  })
  .openapi(getRoute, async (c) => {
    const { alertId } = c.req.valid("param");
    const alert = await c.get("services").alerts.get(alertId);
    if (!alert) throw new AppError("NOT_FOUND", `no alert ${alertId}`);
    return c.json(alert, 200);
  });
