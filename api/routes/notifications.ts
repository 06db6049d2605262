// Notifications over HTTP: the catalog of types, the caller's inbox (newest first, unread only if
// asked, marked read one at a time or all at once) and its live stream (Server-Sent Events with
// Last-Event-ID resume). An account sees its own notifications only.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { NotificationView } from "../../domains/notifications/service.js";
import { ANY_ROLE, accountCaller, guardedRoute } from "../../http/access.js";
import type { AppEnv } from "../../http/context.js";
import { HEARTBEAT_SECONDS, resumableStream } from "../../http/event-stream.js";
import { errorResponses, jsonResponse } from "../openapi.js";

const notificationSchema = z
  .object({
    id: z.number().int(),
    seq: z.number().int().openapi({ description: "Its number in delivery order: the stream's event id" }),
    type: z.string().openapi({ example: "key.revoked" }),
    data: z.unknown(),
    createdAt: z.string(),
    read: z.boolean(),
  })
  .openapi("Notification");

/** Every account, on its own notifications. */
const OWN = { roles: ANY_ROLE };

const types = guardedRoute(OWN, {
  method: "get",
  path: "/v1/notifications/types",
  tags: ["notifications"],
  summary: "The catalog of notification types: name, description, JSON schema of data, example",
  responses: {
    200: jsonResponse(
      z.object({
        items: z.array(
          z.object({
            name: z.string(),
            description: z.string(),
            schema: z.unknown(),
            example: z.unknown(),
            audience: z
              .object({ roles: z.array(z.string()).readonly(), subscribedByDefault: z.boolean() })
              .nullable()
              .openapi({
                description: "Null: sent to the account it concerns; else announced to these roles",
              }),
          }),
        ),
      }),
      "The catalog",
    ),
    ...errorResponses(),
  },
});

const inbox = guardedRoute(OWN, {
  method: "get",
  path: "/v1/notifications",
  tags: ["notifications"],
  summary: "The caller's notifications, newest first",
  request: {
    query: z.object({
      unread: z.enum(["true", "false"]).optional().openapi({ description: "true: unread ones only" }),
      before: z.coerce
        .number()
        .int()
        .min(1)
        .optional()
        .openapi({ description: "The nextBefore of the previous page" }),
      limit: z.coerce.number().int().min(1).max(200).default(50),
    }),
  },
  responses: {
    200: jsonResponse(
      z.object({ items: z.array(notificationSchema), nextBefore: z.number().int().nullable() }),
      "A page",
    ),
    ...errorResponses(400),
  },
});

const markRead = guardedRoute(OWN, {
  method: "post",
  path: "/v1/notifications/{id}/read",
  tags: ["notifications"],
  summary: "Mark one of the caller's notifications read",
  request: { params: z.object({ id: z.coerce.number().int().min(1) }) },
  responses: { 204: { description: "Read" }, ...errorResponses(400, 404) },
});

const markAllRead = guardedRoute(OWN, {
  method: "post",
  path: "/v1/notifications/read-all",
  tags: ["notifications"],
  summary: "Mark all the caller's notifications read",
  responses: {
    200: jsonResponse(z.object({ marked: z.number().int() }), "How many were unread"),
    ...errorResponses(),
  },
});

const stream = guardedRoute(OWN, {
  method: "get",
  path: "/v1/notifications/stream",
  tags: ["notifications"],
  summary: "Server-Sent Events: the caller's notifications as they are delivered",
  description:
    "Each `notification` event's id is its `seq`. A `heartbeat` comes every " +
    `${HEARTBEAT_SECONDS} s. Reconnect with \`Last-Event-ID\` to receive what was delivered since.`,
  request: {
    headers: z.object({
      "last-event-id": z
        .string()
        .regex(/^\d{1,18}$/)
        .optional(),
    }),
  },
  responses: {
    200: { description: "An event stream", content: { "text/event-stream": { schema: z.string() } } },
    ...errorResponses(400),
  },
});

const subscriptionSchema = z
  .object({
    type: z.string().openapi({ example: "alert.triggered" }),
    subscribed: z.boolean(),
    default: z.boolean().openapi({ description: "Whether an account that never chose receives it" }),
  })
  .openapi("NotificationSubscription");

const subscriptions = guardedRoute(OWN, {
  method: "get",
  path: "/v1/notifications/subscriptions",
  tags: ["notifications"],
  summary: "The announced types the caller's role may receive (alerts, access requests), and whether it does",
  responses: {
    200: jsonResponse(z.object({ items: z.array(subscriptionSchema) }), "The caller's subscriptions"),
    ...errorResponses(),
  },
});

const updateSubscription = guardedRoute(OWN, {
  method: "put",
  path: "/v1/notifications/subscriptions/{type}",
  tags: ["notifications"],
  summary: "Subscribe to an announced type, or unsubscribe",
  request: {
    params: z.object({ type: z.string().min(1).max(100) }),
    body: { content: { "application/json": { schema: z.object({ subscribed: z.boolean() }).strict() } } },
  },
  responses: {
    200: jsonResponse(subscriptionSchema, "The choice, recorded"),
    ...errorResponses(400, 403, 404),
  },
});

const accountOf = (c: Context<AppEnv>) => accountCaller(c).accountId;

export const notificationsRoutes = new OpenAPIHono<AppEnv>()
  .openapi(types, async (c) => c.json({ items: c.get("services").notifications.catalog() }, 200))
  .openapi(inbox, async (c) => {
    const q = c.req.valid("query");
    const page = await c.get("services").notifications.list({
      accountId: accountOf(c),
      unread: q.unread === "true",
      before: q.before,
      limit: q.limit,
    });
    return c.json(page, 200);
  })
  .openapi(subscriptions, async (c) => {
    const { accountId, role } = accountCaller(c);
    return c.json({ items: await c.get("services").notifications.subscriptions(accountId, role) }, 200);
  })
  .openapi(updateSubscription, async (c) => {
    const { accountId, role } = accountCaller(c);
    const choice = await c.get("services").notifications.updateSubscription({
      accountId,
      role,
      type: c.req.valid("param").type,
      subscribed: c.req.valid("json").subscribed,
    });
    return c.json(choice, 200);
  })
  .openapi(markRead, async (c) => {
    await c.get("services").notifications.markRead(accountOf(c), c.req.valid("param").id);
    return c.body(null, 204);
  })
  .openapi(markAllRead, async (c) =>
    c.json({ marked: await c.get("services").notifications.markAllRead(accountOf(c)) }, 200),
  )
  .openapi(stream, async (c) => {
    const accountId = accountOf(c);
    const notifications = c.get("services").notifications;
    return resumableStream<NotificationView & { accountId: string }>(
      c,
      c.req.valid("header")["last-event-id"],
      {
        subscribe: (push) =>
          notifications.subscribe((owner, n) => owner === accountId && push({ ...n, accountId })),
        missedSince: async (last) =>
          (await notifications.after(accountId, Number(last))).map((n) => ({ ...n, accountId })),
        idOf: (n) => String(n.seq),
        compareIds: (a, b) => Number(a) - Number(b),
        render: ({ accountId: _owner, ...n }) => ({ event: "notification", data: n }),
      },
    );
  });
