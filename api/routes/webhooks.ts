// Webhooks over HTTP: an account registers its endpoints (the signing secret is shown once, at
// creation and at each rotation), changes, disables and deletes them, reads their deliveries and
// sends a test. An account sees its own endpoints only: another's answers 404, as a missing one.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { isNotificationType } from "../../domains/notifications/types.js";
import { ANY_ROLE, accountCaller, guardedRoute } from "../../http/access.js";
import type { AppEnv } from "../../http/context.js";
import { errorResponses, jsonResponse, validationHook } from "../openapi.js";

const body = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { "application/json": { schema } },
});

const typesSchema = z
  .array(z.string().refine(isNotificationType, "not a notification type (GET /v1/notifications/types)"))
  .max(100)
  .openapi({ description: "Notification types to send; empty or absent: all", example: ["key.revoked"] });
const urlSchema = z.string().min(1).max(2_048).openapi({ example: "https://example.com/hooks/conveyor" });

const endpointSchema = z
  .object({
    id: z.string().openapi({ example: "whep_3kP9sQ2mXv7Lb1Nc8Rt4Wz" }),
    url: z.string(),
    types: z.array(z.string()),
    disabled: z.boolean(),
    disabledAt: z.string().nullable(),
    disabledReason: z.string().nullable(),
    previousSecretExpiresAt: z.string().nullable(),
    createdAt: z.string(),
  })
  .openapi("WebhookEndpoint");
const withSecret = endpointSchema
  .extend({
    secret: z.string().openapi({ description: "The signing secret, shown this once", example: "whsec_…" }),
  })
  .openapi("WebhookEndpointWithSecret");
const deliverySchema = z
  .object({
    id: z.string().openapi({ description: "The webhook-id header", example: "msg_2Gk…" }),
    notificationId: z.number().int().nullable(),
    type: z.string(),
    state: z.enum(["pending", "succeeded", "dead"]),
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastStatus: z.number().int().nullable(),
    createdAt: z.string(),
    history: z.array(
      z.object({
        status: z.number().int().nullable(),
        error: z.string().nullable(),
        durationMs: z.number().int(),
        responseExcerpt: z.string().nullable(),
        at: z.string(),
      }),
    ),
  })
  .openapi("WebhookDelivery");

const params = z.object({ id: z.string().regex(/^whep_[\w-]{1,64}$/, "not a webhook endpoint id") });

/** Every account, on its own endpoints. */
const OWN = { roles: ANY_ROLE };
const TAGS = ["webhooks"];

const create = guardedRoute(OWN, {
  method: "post",
  path: "/v1/webhooks",
  tags: TAGS,
  summary: "Register a webhook endpoint; its signing secret is in the answer, once",
  request: { body: body(z.object({ url: urlSchema, types: typesSchema.optional() }).strict()) },
  responses: { 201: jsonResponse(withSecret, "Registered"), ...errorResponses(400) },
});
const list = guardedRoute(OWN, {
  method: "get",
  path: "/v1/webhooks",
  tags: TAGS,
  summary: "The caller's webhook endpoints",
  responses: {
    200: jsonResponse(z.object({ items: z.array(endpointSchema) }), "Its endpoints"),
    ...errorResponses(),
  },
});
const getOne = guardedRoute(OWN, {
  method: "get",
  path: "/v1/webhooks/{id}",
  tags: TAGS,
  summary: "One of the caller's webhook endpoints",
  request: { params },
  responses: { 200: jsonResponse(endpointSchema, "The endpoint"), ...errorResponses(400, 404) },
});
const update = guardedRoute(OWN, {
  method: "patch",
  path: "/v1/webhooks/{id}",
  tags: TAGS,
  summary: "Change an endpoint's URL or types, or disable or enable it",
  request: {
    params,
    body: body(
      z
        .object({
          url: urlSchema.optional(),
          types: typesSchema.optional(),
          disabled: z.boolean().optional(),
        })
        .strict(),
    ),
  },
  responses: { 200: jsonResponse(endpointSchema, "The endpoint"), ...errorResponses(400, 404) },
});
const remove = guardedRoute(OWN, {
  method: "delete",
  path: "/v1/webhooks/{id}",
  tags: TAGS,
  summary: "Delete an endpoint, and its deliveries",
  request: { params },
  responses: { 204: { description: "Deleted" }, ...errorResponses(400, 404) },
});
const rotate = guardedRoute(OWN, {
  method: "post",
  path: "/v1/webhooks/{id}/rotate-secret",
  tags: TAGS,
  summary: "A new signing secret, in the answer once; the previous one signs too during the overlap",
  request: {
    params,
    body: {
      required: false,
      content: {
        "application/json": {
          schema: z
            .object({
              overlapSeconds: z
                .number()
                .int()
                .min(0)
                .max(7 * 86_400)
                .default(86_400)
                .openapi({ description: "How long the previous secret keeps signing beside the new one" }),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    200: jsonResponse(withSecret, "The endpoint and its new secret"),
    ...errorResponses(400, 404),
  },
});
const deliveries = guardedRoute(OWN, {
  method: "get",
  path: "/v1/webhooks/{id}/deliveries",
  tags: TAGS,
  summary: "The endpoint's latest deliveries, newest first, with every attempt",
  request: { params, query: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }) },
  responses: {
    200: jsonResponse(z.object({ items: z.array(deliverySchema) }), "Deliveries"),
    ...errorResponses(400, 404),
  },
});
const redeliver = guardedRoute(OWN, {
  method: "post",
  path: "/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver",
  tags: TAGS,
  summary: "Send a dead delivery once more, under the same webhook-id",
  request: {
    params: params.extend({ deliveryId: z.string().regex(/^msg_[\w-]{1,64}$/, "not a delivery id") }),
  },
  responses: { 202: { description: "Queued; see its deliveries" }, ...errorResponses(400, 404, 409) },
});
const recover = guardedRoute(OWN, {
  method: "post",
  path: "/v1/webhooks/{id}/recover",
  tags: TAGS,
  summary: "Send every dead delivery since a time once more (after an outage of the receiver)",
  request: {
    params,
    body: {
      required: true,
      content: {
        "application/json": {
          schema: z
            .object({ since: z.iso.datetime({ offset: true }).openapi({ example: "2026-12-03T00:00:00Z" }) })
            .openapi("WebhookRecover"),
        },
      },
    },
  },
  responses: {
    202: jsonResponse(z.object({ redriven: z.number().int() }), "Queued, at most 10,000 per call"),
    ...errorResponses(400, 404),
  },
});
const test = guardedRoute(OWN, {
  method: "post",
  path: "/v1/webhooks/{id}/test",
  tags: TAGS,
  summary: "Send a test.ping to the endpoint",
  request: { params },
  responses: {
    202: jsonResponse(z.object({ deliveryId: z.string() }), "Queued; see its deliveries"),
    ...errorResponses(400, 404),
  },
});

const accountOf = (c: Context<AppEnv>) => accountCaller(c).accountId;

export const webhooksRoutes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
  .openapi(create, async (c) => {
    const made = await c.get("services").notifications.webhooks.create(accountOf(c), c.req.valid("json"));
    return c.json(made, 201);
  })
  .openapi(list, async (c) =>
    c.json({ items: await c.get("services").notifications.webhooks.list(accountOf(c)) }, 200),
  )
  .openapi(getOne, async (c) =>
    c.json(await c.get("services").notifications.webhooks.get(accountOf(c), c.req.valid("param").id), 200),
  )
  .openapi(update, async (c) => {
    const webhooks = c.get("services").notifications.webhooks;
    return c.json(await webhooks.update(accountOf(c), c.req.valid("param").id, c.req.valid("json")), 200);
  })
  .openapi(remove, async (c) => {
    await c.get("services").notifications.webhooks.remove(accountOf(c), c.req.valid("param").id);
    return c.body(null, 204);
  })
  .openapi(rotate, async (c) => {
    const webhooks = c.get("services").notifications.webhooks;
    // No body: the default overlap.
    const overlapSeconds =
      (c.req.valid("json") as { overlapSeconds?: number } | undefined)?.overlapSeconds ?? 86_400;
    return c.json(await webhooks.rotateSecret(accountOf(c), c.req.valid("param").id, overlapSeconds), 200);
  })
  .openapi(deliveries, async (c) => {
    const webhooks = c.get("services").notifications.webhooks;
    const items = await webhooks.deliveries(
      accountOf(c),
      c.req.valid("param").id,
      c.req.valid("query").limit,
    );
    return c.json({ items }, 200);
  })
  .openapi(redeliver, async (c) => {
    const { id, deliveryId } = c.req.valid("param");
    await c.get("services").notifications.webhooks.redeliver(accountOf(c), id, deliveryId);
    return c.body(null, 202);
  })
  .openapi(recover, async (c) => {
    const since = new Date(c.req.valid("json").since);
    const redriven = await c
      .get("services")
      .notifications.webhooks.recover(accountOf(c), c.req.valid("param").id, since);
    return c.json({ redriven }, 202);
  })
  .openapi(test, async (c) =>
    c.json(await c.get("services").notifications.webhooks.test(accountOf(c), c.req.valid("param").id), 202),
  );
