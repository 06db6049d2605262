// Identity over HTTP: the token exchange (POST /v1/tokens), an account's own view of itself, and
// what admins manage: accounts, API keys (create, list by prefix, rotate, revoke) and the audit
// log of those changes. The domain (domains/identity/) does the work and writes the audit events.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ROLES } from "../../domains/identity/caller.js";
import type { Actor } from "../../domains/identity/service.js";
import { ADMINS, ANY_ROLE, guardedRoute } from "../../http/access.js";
import type { AppEnv } from "../../http/context.js";
import { AppError } from "../../lib/errors.js";
import { errorResponses, jsonResponse } from "../openapi.js";

const PAGE_MAX = 200;

const accountSchema = z
  .object({
    id: z.string().openapi({ example: "acc_3fJ9kQ2mZt7Vx1Lp" }),
    role: z.enum(ROLES),
    name: z.string(),
    email: z
      .string()
      .nullable()
      .openapi({ description: "Encrypted at rest; shown to admins and its account" }),
    disabled: z.boolean(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Account");

const keySchema = z
  .object({
    id: z.string().openapi({ example: "key_8sK2pQ9xVb4Nm7Rt" }),
    accountId: z.string(),
    prefix: z
      .string()
      .openapi({ example: "cvy_4Gk9", description: "The key's first characters, for display" }),
    name: z.string(),
    state: z.enum(["active", "expired", "revoked"]),
    expiresAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
    replacedBy: z.string().nullable().openapi({ description: "The key this one was rotated to" }),
    lastUsedAt: z
      .string()
      .nullable()
      .openapi({ description: "Recorded in batches: up to API_KEY_LAST_USED_FLUSH_SECONDS behind" }),
    createdAt: z.string(),
  })
  .openapi("ApiKey");

const secretField = z.string().openapi({
  example: "cvy_4Gk9Qm2XzP7tLw8Rb1Nc5Vd3Hf6Js0Ay1a2b3c",
  description: "The API key itself. Shown in this answer only: it is stored as a keyed hash.",
});

const auditEventSchema = z
  .object({
    id: z.number().int(),
    at: z.string(),
    actor: z.object({ accountId: z.string().nullable(), keyId: z.string().nullable() }).openapi({
      description: "Who made the change; both null for the keys command (npm run keys) or npm start",
    }),
    action: z.string().openapi({ example: "key.revoke" }),
    target: z.object({ type: z.string(), id: z.string() }),
    details: z.record(z.string(), z.unknown()),
    requestId: z.string().nullable(),
  })
  .openapi("AuditEvent");

const limitQuery = z.coerce.number().int().min(1).max(PAGE_MAX).default(50);
const expiresAtField = z
  .string()
  .datetime({ offset: true })
  .nullable()
  .optional()
  .openapi({ description: "When the key stops working (ISO 8601); null or absent: never" });
const idParam = (example: string) => z.object({ id: z.string().min(1).max(64).openapi({ example }) });
const jsonBody = <T extends z.ZodType>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

/** What the audit log records of the caller making a change. */
function actorOf(c: Context<AppEnv>): Actor {
  const caller = c.get("caller");
  return {
    accountId: caller.kind === "account" ? caller.accountId : null,
    keyId: caller.kind === "account" ? caller.keyId : null,
    requestId: c.get("requestId"),
  };
}

/** Answers that carry a credential are never cached anywhere. */
const noStore = (c: Context<AppEnv>) => c.header("Cache-Control", "no-store");

const toDate = (iso: string | null | undefined) =>
  iso === undefined ? undefined : iso === null ? null : new Date(iso);

// ---- The token exchange and the caller's own account ------------------------------------------

/** The token exchange at `path` (also the usage product's POST /api/token). */
export const tokenRoute = <P extends string>(path: P, tag: string) =>
  guardedRoute(
    { roles: ANY_ROLE, apiKeyOnly: true },
    {
      method: "post",
      path,
      tags: [tag],
      summary: "Exchange an API key for a short-lived access token (JWT)",
      description:
        "Send the API key (X-API-Key or Authorization: Bearer); the token acts for the same account " +
        "and key, with the same role, until it expires (JWT_TTL_SECONDS, default 15 min), or the key " +
        "is revoked, whichever comes first.",
      responses: {
        200: jsonResponse(
          z
            .object({
              access_token: z.string(),
              token_type: z.literal("Bearer"),
              expires_in: z.number().int().openapi({ description: "Seconds" }),
            })
            .openapi("AccessToken"),
          "An access token (RFC 6749 shape)",
        ),
        ...errorResponses(),
      },
    },
  );

/** Answers a token exchange: a token for the caller's key, never cached anywhere. */
export async function exchangeToken(c: Context<AppEnv>) {
  const caller = c.get("caller");
  if (caller.kind !== "account") throw new AppError("UNAUTHORIZED", "an API key is required");
  const issued = await c.get("services").identity.issueToken(caller);
  noStore(c);
  return c.json(
    { access_token: issued.token, token_type: "Bearer" as const, expires_in: issued.expiresIn },
    200,
  );
}

const me = guardedRoute(
  { roles: ANY_ROLE },
  {
    method: "get",
    path: "/v1/accounts/me",
    tags: ["identity"],
    summary: "The caller's own account",
    responses: { 200: jsonResponse(accountSchema, "The account"), ...errorResponses() },
  },
);

// ---- Accounts (admins) --------------------------------------------------------------------------

const createAccount = guardedRoute(
  { roles: ADMINS },
  {
    method: "post",
    path: "/v1/accounts",
    tags: ["identity"],
    summary: "Create an account, with its first API key unless `key` is false",
    request: jsonBody(
      z
        .object({
          role: z.enum(ROLES),
          name: z.string().trim().min(1).max(200),
          email: z.string().email().max(320).optional(),
          key: z
            .union([
              z.literal(false),
              z.object({ name: z.string().max(200).optional(), expiresAt: expiresAtField }),
            ])
            .optional()
            .openapi({ description: "The first key's name and expiry; false: no key" }),
        })
        .openapi("AccountCreate"),
    ),
    responses: {
      201: jsonResponse(
        z.object({ account: accountSchema, key: keySchema.optional(), secret: secretField.optional() }),
        "Created; `secret` is the first key, shown only here",
      ),
      ...errorResponses(400, 409),
    },
  },
);

const listAccounts = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/v1/accounts",
    tags: ["identity"],
    summary: "List accounts by id, optionally of one role",
    request: {
      query: z.object({
        role: z.enum(ROLES).optional(),
        after: z.string().max(64).optional().openapi({ description: "The nextAfter of the previous page" }),
        limit: limitQuery,
      }),
    },
    responses: {
      200: jsonResponse(
        z.object({ items: z.array(accountSchema), nextAfter: z.string().nullable() }),
        "A page",
      ),
      ...errorResponses(400),
    },
  },
);

const getAccount = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/v1/accounts/{id}",
    tags: ["identity"],
    summary: "One account",
    request: { params: idParam("acc_3fJ9kQ2mZt7Vx1Lp") },
    responses: { 200: jsonResponse(accountSchema, "The account"), ...errorResponses(404) },
  },
);

const updateAccount = guardedRoute(
  { roles: ADMINS },
  {
    method: "patch",
    path: "/v1/accounts/{id}",
    tags: ["identity"],
    summary: "Rename, change the e-mail address, or disable (all its keys stop at once) or enable",
    request: {
      params: idParam("acc_3fJ9kQ2mZt7Vx1Lp"),
      ...jsonBody(
        z
          .object({
            name: z.string().trim().min(1).max(200).optional(),
            email: z.string().email().max(320).nullable().optional(),
            disabled: z.boolean().optional(),
          })
          .refine((b) => Object.values(b).some((v) => v !== undefined), "change at least one field")
          .openapi("AccountUpdate"),
      ),
    },
    responses: { 200: jsonResponse(accountSchema, "The account"), ...errorResponses(400, 404, 409) },
  },
);

// ---- API keys (admins) ----------------------------------------------------------------------------

const createKey = guardedRoute(
  { roles: ADMINS },
  {
    method: "post",
    path: "/v1/keys",
    tags: ["identity"],
    summary: "Create an API key for an account",
    request: jsonBody(
      z
        .object({
          accountId: z.string().min(1).max(64),
          name: z.string().max(200).optional(),
          expiresAt: expiresAtField,
        })
        .openapi("KeyCreate"),
    ),
    responses: {
      201: jsonResponse(
        z.object({ key: keySchema, secret: secretField }),
        "Created; `secret` is shown only here",
      ),
      ...errorResponses(400, 404),
    },
  },
);

const listKeys = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/v1/keys",
    tags: ["identity"],
    summary: "List API keys by id: all, an account's, or those whose display prefix starts so",
    description: "`prefix` finds a key from its first characters, e.g. those a secret scanner reported.",
    request: {
      query: z.object({
        prefix: z.string().min(1).max(40).optional().openapi({ example: "cvy_4Gk9" }),
        accountId: z.string().max(64).optional(),
        after: z.string().max(64).optional().openapi({ description: "The nextAfter of the previous page" }),
        limit: limitQuery,
      }),
    },
    responses: {
      200: jsonResponse(z.object({ items: z.array(keySchema), nextAfter: z.string().nullable() }), "A page"),
      ...errorResponses(400),
    },
  },
);

const getKey = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/v1/keys/{id}",
    tags: ["identity"],
    summary: "One API key (never its secret)",
    request: { params: idParam("key_8sK2pQ9xVb4Nm7Rt") },
    responses: { 200: jsonResponse(keySchema, "The key"), ...errorResponses(404) },
  },
);

const rotateKey = guardedRoute(
  { roles: ADMINS },
  {
    method: "post",
    path: "/v1/keys/{id}/rotate",
    tags: ["identity"],
    summary: "A new key for the same account; the old one keeps working for a grace period",
    request: {
      params: idParam("key_8sK2pQ9xVb4Nm7Rt"),
      body: {
        content: {
          "application/json": {
            schema: z
              .object({
                graceSeconds: z
                  .number()
                  .int()
                  .min(0)
                  .max(30 * 86_400)
                  .optional()
                  .openapi({
                    description:
                      "How long the old key keeps working (default API_KEY_ROTATION_GRACE_SECONDS; 0: stops now)",
                  }),
              })
              .openapi("KeyRotate"),
          },
        },
        required: false,
      },
    },
    responses: {
      200: jsonResponse(
        z.object({ key: keySchema, secret: secretField, previous: keySchema }),
        "The new key (its secret shown only here) and the old one with its new expiry",
      ),
      ...errorResponses(400, 404, 409),
    },
  },
);

const revokeKey = guardedRoute(
  { roles: ADMINS },
  {
    method: "post",
    path: "/v1/keys/{id}/revoke",
    tags: ["identity"],
    summary: "Revoke a key: every API process refuses it within a second, and its tokens with it",
    request: { params: idParam("key_8sK2pQ9xVb4Nm7Rt") },
    responses: { 200: jsonResponse(keySchema, "The revoked key"), ...errorResponses(404) },
  },
);

const listAuditEvents = guardedRoute(
  { roles: ADMINS },
  {
    method: "get",
    path: "/v1/audit-events",
    tags: ["identity"],
    summary: "The audit log of account and key changes, newest first",
    request: {
      query: z.object({
        targetId: z.string().max(64).optional().openapi({ description: "An account or key id" }),
        action: z.string().max(64).optional().openapi({ example: "key.revoke" }),
        before: z.coerce
          .number()
          .int()
          .min(1)
          .optional()
          .openapi({ description: "The nextBefore of the previous page" }),
        limit: limitQuery,
      }),
    },
    responses: {
      200: jsonResponse(
        z.object({ items: z.array(auditEventSchema), nextBefore: z.number().int().nullable() }),
        "A page",
      ),
      ...errorResponses(400),
    },
  },
);

const notFound = (what: string, id: string) => new AppError("NOT_FOUND", `no ${what} ${id}`);

export const identityRoutes = new OpenAPIHono<AppEnv>()
  .openapi(tokenRoute("/v1/tokens", "identity"), exchangeToken)
  .openapi(me, async (c) => {
    const caller = c.get("caller");
    const account =
      caller.kind === "account" ? await c.get("services").identity.getAccount(caller.accountId) : undefined;
    if (!account) throw new AppError("UNAUTHORIZED", "no account behind this credential");
    return c.json(account, 200);
  })
  .openapi(createAccount, async (c) => {
    const body = c.req.valid("json");
    const created = await c.get("services").identity.createAccount(actorOf(c), {
      role: body.role,
      name: body.name,
      email: body.email,
      withKey:
        body.key === false ? undefined : { name: body.key?.name, expiresAt: toDate(body.key?.expiresAt) },
    });
    noStore(c);
    return c.json(created, 201);
  })
  .openapi(listAccounts, async (c) =>
    c.json(await c.get("services").identity.listAccounts(c.req.valid("query")), 200),
  )
  .openapi(getAccount, async (c) => {
    const { id } = c.req.valid("param");
    const account = await c.get("services").identity.getAccount(id);
    if (!account) throw notFound("account", id);
    return c.json(account, 200);
  })
  .openapi(updateAccount, async (c) =>
    c.json(
      await c
        .get("services")
        .identity.updateAccount(actorOf(c), c.req.valid("param").id, c.req.valid("json")),
      200,
    ),
  )
  .openapi(createKey, async (c) => {
    const body = c.req.valid("json");
    const created = await c.get("services").identity.createKey(actorOf(c), {
      accountId: body.accountId,
      name: body.name,
      expiresAt: toDate(body.expiresAt),
    });
    noStore(c);
    return c.json(created, 201);
  })
  .openapi(listKeys, async (c) =>
    c.json(await c.get("services").identity.listKeys(c.req.valid("query")), 200),
  )
  .openapi(getKey, async (c) => {
    const { id } = c.req.valid("param");
    const key = await c.get("services").identity.getKey(id);
    if (!key) throw notFound("key", id);
    return c.json(key, 200);
  })
  .openapi(rotateKey, async (c) => {
    // Without a body (it is optional), the rotation takes the default grace period.
    const { graceSeconds } = c.req.valid("json");
    const rotated = await c
      .get("services")
      .identity.rotateKey(actorOf(c), c.req.valid("param").id, graceSeconds);
    noStore(c);
    return c.json(rotated, 200);
  })
  .openapi(revokeKey, async (c) =>
    c.json(await c.get("services").identity.revokeKey(actorOf(c), c.req.valid("param").id), 200),
  )
  .openapi(listAuditEvents, async (c) =>
    c.json(await c.get("services").identity.listAuditEvents(c.req.valid("query")), 200),
  );
