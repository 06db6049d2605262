// Usage over HTTP, on the seed's paths: clients register, log their hits (one, or up to 1,000 at
// once), exchange their key for a token, and read their usage; admins read everyone's and the top
// clients. The usage domain (domains/usage/) does the work; every route is declared, as all are.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { LimitKind } from "../../domains/usage/client-limits.js";
import { type CommittedBatchEvent, compareEventIds } from "../../domains/usage/events.js";
import type { CachedAnswer } from "../../domains/usage/read-cache.js";
import { DAILY_DAYS, TOP_CLIENTS, TOP_WINDOW_HOURS, type UsageService } from "../../domains/usage/service.js";
import { ADMINS, accountCaller, guardedRoute, PUBLIC, rateLimitHeaders } from "../../http/access.js";
import { clientAddress } from "../../http/client-address.js";
import type { AppEnv } from "../../http/context.js";
import { HEARTBEAT_SECONDS, resumableStream } from "../../http/event-stream.js";
import { cidrProblem, isStorableAddress } from "../../lib/cidr.js";
import { AppError } from "../../lib/errors.js";
import { pgText } from "../../lib/postgres-values.js";
import { secureEqual } from "../../lib/secure-compare.js";
import { USAGE_HITS_PER_JOB } from "../../queues/log-batching.js";
import { errorResponses, jsonResponse } from "../openapi.js";
import { exchangeToken, tokenRoute } from "./identity.js";

const DAY_MS = 86_400_000;
/** A hit may be stamped this far in the future (clocks differ), not more. */
const FUTURE_SKEW_MS = 5 * 60_000;

const clientIdField = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9._-]+$/, "letters, digits, and . _ - only")
  .openapi({ example: "acme-corp" });

const hitSchema = z
  .object({
    ip: z.string().refine(isStorableAddress, "must be an IPv4 or IPv6 address (no zone)"),
    endpoint: pgText().min(1).max(2048).openapi({ example: "/v2/orders" }),
    timestamp: z
      .union([z.iso.datetime({ offset: true }), z.number().int().nonnegative()])
      .optional()
      .openapi({ description: "When the hit happened: ISO 8601, or epoch ms; default: when it is received" }),
    method: z
      .string()
      .regex(/^[A-Za-z]{1,16}$/, "an HTTP method")
      .transform((m) => m.toUpperCase())
      .optional(),
    status: z.number().int().min(100).max(599).optional(),
  })
  .openapi("Hit");

const logBody = z
  .union([hitSchema, z.object({ hits: z.array(hitSchema).min(1).max(USAGE_HITS_PER_JOB) })])
  .openapi("HitLog", { description: `One hit, or up to ${USAGE_HITS_PER_JOB} as {hits: […]}` });

// Registration is open (or needs REGISTRATION_TOKEN, checked below): the caller has no account yet.
const register = guardedRoute(PUBLIC, {
  method: "post",
  path: "/api/register",
  tags: ["usage"],
  summary: "Register a client: an account of role client, and its API key (shown once)",
  description:
    "Open to anyone unless REGISTRATION_TOKEN is set; then send it as `Authorization: Bearer <token>`.",
  request: {
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z
            .object({
              name: z.string().trim().min(1).max(200),
              email: z.string().email().max(320),
              client_id: clientIdField.optional(),
            })
            .openapi("ClientRegistration"),
        },
      },
    },
  },
  responses: {
    201: jsonResponse(
      z
        .object({ client_id: z.string(), name: z.string(), email: z.string(), api_key: z.string() })
        .openapi("RegisteredClient"),
      "Registered; api_key is shown only here",
    ),
    ...errorResponses(400, 401, 409),
  },
});

const logHits = guardedRoute(
  // Counted by the hit against the client's ingestion limits, not by the request.
  { roles: ["client"], ownRateLimit: true },
  {
    method: "post",
    path: "/api/logs",
    tags: ["usage"],
    summary: "Log hits: 202 once they are durable (in a job in Redis)",
    description:
      "A batch counts its hits against the client's ingestion limits (a minute and an hour). " +
      "Hits show in /api/usage within a second or two of the 202.",
    request: { body: { required: true, content: { "application/json": { schema: logBody } } } },
    responses: {
      202: jsonResponse(z.object({ accepted: z.number().int() }).openapi("HitsAccepted"), "Durable"),
      ...errorResponses(400),
    },
  },
);

const dailyQuery = z.object({
  client_id: clientIdField.optional().openapi({ description: "Admins and ops: one client" }),
});
const dailyUsageSchema = z
  .object({
    days: z.number().int(),
    clients: z.array(
      z.object({
        client_id: z.string(),
        daily: z.array(z.object({ date: z.string(), requests: z.number().int() })),
      }),
    ),
  })
  .openapi("DailyUsage");

const daily = guardedRoute(
  { roles: ["client", "admin", "ops"] },
  {
    method: "get",
    path: "/api/usage/daily",
    tags: ["usage"],
    summary: `Requests per client per UTC day for the last ${DAILY_DAYS} days, zero-filled`,
    description: "A client sees itself; admins and ops see every client, or one with ?client_id=.",
    request: { query: dailyQuery },
    responses: { 200: jsonResponse(dailyUsageSchema, "Daily usage"), ...errorResponses(400, 404) },
  },
);

const top = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/api/usage/top",
    tags: ["usage"],
    summary: `The ${TOP_CLIENTS} clients with the most requests in the last ${TOP_WINDOW_HOURS} h`,
    description: "Rolling by the hour: this hour and the 23 before it.",
    responses: {
      200: jsonResponse(
        z
          .object({
            window_hours: z.number().int(),
            clients: z.array(z.object({ client_id: z.string(), requests: z.number().int() })),
          })
          .openapi("TopClients"),
        "The top clients",
      ),
      ...errorResponses(),
    },
  },
);

const stream = guardedRoute(
  { roles: ["client", "admin", "ops"] },
  {
    method: "get",
    path: "/api/usage/stream",
    tags: ["usage"],
    summary: "Server-Sent Events: usage as it is committed",
    description:
      "Each `usage` event is one committed batch: `{hits: [{client_id, hour, added}]}`, with the " +
      "event's `id`. A client sees its own hits only; admins and ops see every client's. A " +
      `\`heartbeat\` comes every ${HEARTBEAT_SECONDS} s. Reconnect with \`Last-Event-ID\` to receive ` +
      "the batches missed since (the last 10,000 are kept).",
    request: {
      headers: z.object({
        "last-event-id": z
          .string()
          .regex(/^\d{1,15}-\d{1,10}$/)
          .optional(),
      }),
    },
    responses: {
      200: { description: "An event stream", content: { "text/event-stream": { schema: z.string() } } },
      ...errorResponses(400),
    },
  },
);

const windowSchema = z.object({ limit: z.number().int(), windowSeconds: z.number().int() });
const clientSchema = z
  .object({
    client_id: z.string(),
    account_id: z.string(),
    ip_allowlist: z.array(z.string()).openapi({ description: "CIDR blocks; empty: from anywhere" }),
    limits: z.object({ reads: z.array(windowSchema), hits: z.array(windowSchema) }),
    created_at: z.string(),
  })
  .openapi("UsageClient");
const clientJson = (v: ReturnType<UsageService["view"]>) => ({
  client_id: v.clientId,
  account_id: v.accountId,
  ip_allowlist: v.ipAllowlist,
  limits: v.limits,
  created_at: v.createdAt,
});
const clientParams = z.object({ client_id: clientIdField });
const perWindow = z.number().int().min(1).max(100_000_000).nullable().optional();

const listClients = guardedRoute(
  { roles: ["client", "admin", "ops"] },
  {
    method: "get",
    path: "/api/clients",
    tags: ["usage"],
    summary: "Usage clients with their allowlists and limits: a client sees itself; operators every client",
    request: {
      query: z.object({
        after: clientIdField.optional().openapi({ description: "The next_after of the previous page" }),
        limit: z.coerce.number().int().min(1).max(500).default(100),
      }),
    },
    responses: {
      200: jsonResponse(
        z.object({ items: z.array(clientSchema), next_after: z.string().nullable() }),
        "A page",
      ),
      ...errorResponses(400),
    },
  },
);

const getClient = guardedRoute(
  { roles: ["client", "admin", "ops"] },
  {
    method: "get",
    path: "/api/clients/{client_id}",
    tags: ["usage"],
    summary: "One usage client (a client: itself only)",
    request: { params: clientParams },
    responses: { 200: jsonResponse(clientSchema, "The client"), ...errorResponses(404) },
  },
);

const updateClient = guardedRoute(
  { roles: ["client", "admin"] },
  {
    method: "patch",
    path: "/api/clients/{client_id}",
    tags: ["usage"],
    summary: "Set a client's IP allowlist (the client itself, or an admin) or its own limits (admins)",
    description:
      "`ip_allowlist`: CIDR blocks or addresses its requests must come from; [] for anywhere. Limits: " +
      "requests per window on the read and token routes, hits per window on /api/logs; null: the default.",
    request: {
      params: clientParams,
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z
              .object({
                ip_allowlist: z
                  .array(
                    z
                      .string()
                      .refine((e) => cidrProblem(e) === undefined, "must be an IP address or CIDR block"),
                  )
                  .max(100)
                  .optional(),
                limits: z
                  .object({
                    reads_per_minute: perWindow,
                    reads_per_hour: perWindow,
                    hits_per_minute: perWindow,
                    hits_per_hour: perWindow,
                  })
                  .optional(),
              })
              .refine(
                (b) => b.ip_allowlist !== undefined || b.limits !== undefined,
                "change at least one field",
              )
              .openapi("UsageClientUpdate"),
          },
        },
      },
    },
    responses: { 200: jsonResponse(clientSchema, "The client"), ...errorResponses(400, 404) },
  },
);

/**
 * A client's request admitted: from an address of its IP allowlist (403 otherwise), and counted
 * against its windows of `kind` (429 past either), with the RateLimit headers of the usage policy.
 */
async function limitClient(c: Context<AppEnv>, kind: LimitKind, points = 1) {
  const caller = accountCaller(c);
  if (caller.role !== "client") return caller;
  const usage = c.get("services").usage;
  try {
    rateLimitHeaders(
      c,
      await usage.admit(kind, caller.accountId, clientAddress(c), points),
      `client-${kind}`,
    );
  } catch (err) {
    if (err instanceof AppError && err.code === "RATE_LIMITED") {
      const minute = await usage.minuteWindow(kind, caller.accountId);
      rateLimitHeaders(
        c,
        { ...minute, remaining: 0, resetSeconds: err.retryAfter ?? minute.windowSeconds },
        `client-${kind}`,
      );
    }
    throw err;
  }
  return caller;
}

/**
 * The usage client a request names: any, for operators; for a client, itself only (another
 * client is as unknown to it as one that does not exist).
 */
async function namedClient(c: Context<AppEnv>, clientId: string) {
  const caller = accountCaller(c);
  const client = await c.get("services").usage.clientById(clientId);
  if (!client || (caller.role === "client" && client.accountId !== caller.accountId))
    throw new AppError("NOT_FOUND", `no client ${clientId}`);
  return client;
}

/**
 * Where a usage answer came from, as RFC 9211's Cache-Status: `hit` (the Redis cache, or the live
 * counters), `fwd=miss` (computed now), `hit; detail=memory` (Redis was out of reach: this
 * process's LRU), or `hit; detail=stale` with `Age` (Postgres was out of reach: the last answer
 * computed).
 */
function answerHeaders(c: Context<AppEnv>, answer: CachedAnswer<unknown>) {
  const status = {
    cache: "hit",
    database: "fwd=miss",
    memory: "hit; detail=memory",
    stale: "hit; detail=stale",
  }[answer.source];
  c.header("Cache-Status", `conveyor; ${status}`);
  if (answer.ageSeconds !== undefined) c.header("Age", String(answer.ageSeconds));
}

/** Epoch ms of a hit's timestamp, within what api_hits keeps; 400 otherwise. */
function hitInstant(timestamp: string | number | undefined, now: number, retentionDays: number) {
  if (timestamp === undefined) return undefined;
  const at = typeof timestamp === "number" ? timestamp : Date.parse(timestamp);
  const oldest = Math.floor(now / DAY_MS) * DAY_MS - (retentionDays - 1) * DAY_MS;
  if (at < oldest || at > now + FUTURE_SKEW_MS)
    throw new AppError(
      "VALIDATION_FAILED",
      `timestamp must be within the last ${retentionDays} days (USAGE_RETENTION_DAYS) and not in the future`,
      [{ path: "timestamp", message: "out of range" }],
    );
  return at;
}

export const usageRoutes = new OpenAPIHono<AppEnv>()
  .openapi(register, async (c) => {
    const token = c.get("deps").config.REGISTRATION_TOKEN;
    if (token !== undefined) {
      const presented = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header("Authorization") ?? "")?.[1];
      if (presented === undefined || !secureEqual(presented, token)) {
        c.header("WWW-Authenticate", 'Bearer realm="conveyor-registration"');
        throw new AppError(
          "UNAUTHORIZED",
          "registration needs the registration token (Authorization: Bearer)",
        );
      }
    }
    const body = c.req.valid("json");
    const made = await c.get("services").usage.register({
      name: body.name,
      email: body.email,
      clientId: body.client_id,
      address: clientAddress(c),
    });
    c.header("Cache-Control", "no-store");
    return c.json(
      { client_id: made.clientId, name: made.name, email: made.email, api_key: made.apiKey },
      201,
    );
  })
  .openapi(logHits, async (c) => {
    const body = c.req.valid("json");
    const now = Date.now();
    const retention = c.get("deps").config.USAGE_RETENTION_DAYS;
    // Every hit checked before any is counted against the client's limits: a 400 costs nothing.
    const hits = ("hits" in body ? body.hits : [body]).map((h) => ({
      ip: h.ip,
      endpoint: h.endpoint,
      at: hitInstant(h.timestamp, now, retention),
      method: h.method,
      status: h.status,
    }));
    const caller = await limitClient(c, "hits", hits.length);
    const { accepted, spooled } = await c.get("services").usage.logHits(caller.accountId, hits);
    // Durable on this server's disk rather than in Redis: replayed once Redis is back.
    if (spooled > 0) c.header("X-Usage-Spooled", String(spooled));
    return c.json({ accepted }, 202);
  })
  .openapi(tokenRoute("/api/token", "usage"), async (c) => {
    await limitClient(c, "reads");
    return exchangeToken(c);
  })
  .openapi(daily, async (c) => {
    const caller = await limitClient(c, "reads");
    const { client_id: clientId } = c.req.valid("query");
    const usage = c.get("services").usage;
    let accountId: string | undefined;
    if (caller.role === "client") {
      if (clientId !== undefined && clientId !== (await usage.client(caller.accountId))?.clientId)
        throw new AppError("FORBIDDEN", "a client sees its own usage only");
      accountId = caller.accountId;
    } else if (clientId !== undefined) {
      const client = await usage.clientById(clientId);
      if (!client) throw new AppError("NOT_FOUND", `no client ${clientId}`);
      accountId = client.accountId;
    }
    const answer = await usage.daily(accountId);
    answerHeaders(c, answer);
    return c.json(
      {
        days: DAILY_DAYS,
        clients: answer.value.map((u) => ({ client_id: u.clientId, daily: u.days })),
      },
      200,
    );
  })
  .openapi(stream, async (c) => {
    const caller = await limitClient(c, "reads");
    const usage = c.get("services").usage;
    // A client's own hits only; operators every client's.
    const own = caller.role === "client" ? caller.accountId : undefined;
    const visible = (event: CommittedBatchEvent) =>
      event.counted
        .filter((h) => own === undefined || h.accountId === own)
        .map((h) => ({ client_id: h.clientId, hour: new Date(h.hour).toISOString(), added: h.hits }));
    return resumableStream(c, c.req.valid("header")["last-event-id"], {
      subscribe: usage.subscribe,
      missedSince: usage.eventsAfter,
      idOf: (event) => event.id,
      compareIds: compareEventIds,
      render: (event) => {
        const hits = visible(event);
        return hits.length > 0 ? { event: "usage", data: { hits } } : undefined;
      },
    });
  })
  .openapi(listClients, async (c) => {
    const caller = await limitClient(c, "reads");
    const usage = c.get("services").usage;
    if (caller.role === "client") {
      const own = await usage.client(caller.accountId);
      return c.json({ items: own ? [clientJson(usage.view(own))] : [], next_after: null }, 200);
    }
    const page = await usage.listClients(c.req.valid("query"));
    return c.json({ items: page.items.map(clientJson), next_after: page.nextAfter }, 200);
  })
  .openapi(getClient, async (c) => {
    await limitClient(c, "reads");
    const client = await namedClient(c, c.req.valid("param").client_id);
    return c.json(clientJson(c.get("services").usage.view(client)), 200);
  })
  .openapi(updateClient, async (c) => {
    const caller = await limitClient(c, "reads");
    const client = await namedClient(c, c.req.valid("param").client_id);
    const body = c.req.valid("json");
    if (body.limits !== undefined && caller.role !== "admin")
      throw new AppError("FORBIDDEN", "only admins set a client's limits");
    const updated = await c.get("services").usage.updateClient(client.accountId, {
      ipAllowlist: body.ip_allowlist,
      readsPerMinute: body.limits?.reads_per_minute,
      readsPerHour: body.limits?.reads_per_hour,
      hitsPerMinute: body.limits?.hits_per_minute,
      hitsPerHour: body.limits?.hits_per_hour,
    });
    return c.json(clientJson(updated), 200);
  })
  .openapi(top, async (c) => {
    const answer = await c.get("services").usage.top();
    answerHeaders(c, answer);
    return c.json(
      {
        window_hours: TOP_WINDOW_HOURS,
        clients: answer.value.map((t) => ({ client_id: t.clientId, requests: t.requests })),
      },
      200,
    );
  });
