// Secrets: HTTP around the secrets domain (domains/secrets/). Stores are sealed and enqueued on
// `encryption` (the worker derives the key and writes); retrieval decrypts in the API.
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { tenantOf } from "../../domains/identity/caller.js";
import { type Access, ANY_ROLE, guardedRoute } from "../../http/access.js";
import { clientAddress } from "../../http/client-address.js";
import type { AppEnv } from "../../http/context.js";
import { jsonText } from "../../http/json-text.js";
import { AppError } from "../../lib/errors.js";
import { exceedsJsonDepth } from "../../lib/json-depth.js";
import { encryptionQueue, SECRET_ID_MAX } from "../../queues/encryption.js";
import { submitJob } from "../job-submission.js";
import {
  errorResponses,
  jobSubmissionHeaders,
  jobSubmissionResponses,
  jobViewSchema,
  validationHook,
} from "../openapi.js";

export const SECRETS_PATH = "/v1/secrets";

/** The store takes a value of up to SECRETS_MAX_VALUE_BYTES, so it has a body limit of its own. */
export const isSecretStore = (method: string, path: string) => method === "POST" && path === SECRETS_PATH;
/** Room for the id, the key and the JSON around a value of the largest size allowed. */
const ENVELOPE_BYTES = 64 * 1024;
const KEY_MAX = 4096;
/** Levels of nested arrays and objects in a value: deeper ones could not be serialised back. */
export const SECRET_VALUE_MAX_DEPTH = 64;
/** A sealed cursor for an id of SECRET_ID_MAX characters of up to 4 UTF-8 bytes, as base64, fits. */
const CURSOR_MAX = 2048;

// Postgres text cannot hold NUL, and a lone surrogate would be stored as U+FFFD: another id.
const storableId = (s: string) => !s.includes("\u0000") && !/\p{Cs}/u.test(s);

const idField = z
  .string()
  .min(1)
  .max(SECRET_ID_MAX)
  .refine(storableId, "must not contain NUL or unpaired surrogates");
const keyField = z.string().min(1, "must not be empty").max(KEY_MAX);

const storeBody = z
  .object({
    id: idField
      .refine((s) => !s.includes("*"), "must not contain * (it is the wildcard of retrieval)")
      .openapi({ example: "engineering-jobs-2026", description: "1-256 characters, no `*`" }),
    encryption_key: keyField.openapi({
      description: "The client's key. Only the worker sees it, sealed in the job; never stored.",
    }),
    value: z
      .unknown()
      .refine((v) => v !== undefined, "is required (any JSON value, null included)")
      .refine(
        (v) => !exceedsJsonDepth(v, SECRET_VALUE_MAX_DEPTH),
        `is nested more than ${SECRET_VALUE_MAX_DEPTH} levels deep (arrays and objects)`,
      )
      .openapi({
        description: `Any JSON value, nested at most ${SECRET_VALUE_MAX_DEPTH} levels deep`,
        example: { title: "Engineer", open: true },
      }),
  })
  .openapi("SecretStore");

const retrieveBody = z
  .object({
    id: idField.openapi({
      example: "engineering-jobs-*",
      description: "An exact id, or a pattern where `*` matches any run of characters",
    }),
    decryption_key: keyField.optional(),
    encryption_key: keyField.optional().openapi({ description: "Synonym of decryption_key" }),
    after: z
      .string()
      .min(1)
      .max(CURSOR_MAX)
      .optional()
      .openapi({
        description:
          "Opaque cursor: the X-Next-After of the previous page, sent back as is, with the same id " +
          "and key (any other cursor is refused with 400)",
      }),
    limit: z
      .number()
      .int()
      .min(1)
      .optional()
      .openapi({ description: "At most this many matches (default and maximum: SECRETS_MAX_MATCHES)" }),
  })
  .superRefine((b, ctx) => {
    if (b.decryption_key === undefined && b.encryption_key === undefined)
      ctx.addIssue({ code: "custom", path: ["decryption_key"], message: "is required" });
    else if (
      b.decryption_key !== undefined &&
      b.encryption_key !== undefined &&
      b.decryption_key !== b.encryption_key
    )
      ctx.addIssue({
        code: "custom",
        path: ["encryption_key"],
        message: "differs from decryption_key; send one of them",
      });
  })
  .openapi("SecretRetrieve");

const secretSchema = z.object({ id: z.string(), value: z.unknown() }).openapi("Secret");

const secretStoredSchema = z.object({ id: z.string(), stored: z.literal(true) }).openapi("SecretStored");

/** Any account, on its own secrets; anonymous callers too when ANONYMOUS_ACCESS lists secrets. */
const SECRETS_ACCESS: Access = { roles: ANY_ROLE, anonymous: "secrets" };

const storeRoute = guardedRoute(SECRETS_ACCESS, {
  method: "post",
  path: SECRETS_PATH,
  tags: ["secrets"],
  summary: "Store (or overwrite) a value under an id, encrypted with the client's key",
  description:
    "Answers 202 with the `encryption` job. The last store submitted for an id wins, whatever order " +
    "workers run them in. With `Prefer: wait=N` it answers 200 once the value is stored.",
  request: {
    headers: jobSubmissionHeaders,
    body: { required: true, content: { "application/json": { schema: storeBody } } },
  },
  responses: {
    ...jobSubmissionResponses,
    200: {
      description:
        "Finished in time (Prefer: wait): `{id, stored: true}` once stored, or the job when it failed",
      content: { "application/json": { schema: z.union([secretStoredSchema, jobViewSchema]) } },
    },
    ...errorResponses(400, 413, 415),
  },
});

const retrieveRoute = guardedRoute(SECRETS_ACCESS, {
  method: "post",
  path: `${SECRETS_PATH}/retrieve`,
  tags: ["secrets"],
  summary: "Records matching an id or a `*` pattern that the key opens, in id order",
  description:
    "Always an array: records the key does not open are left out (and logged), so a wrong key " +
    "gives [], and nothing else about them: no id, no count, no cursor. At most `limit` matches " +
    "are examined; when more exist and the key opened a record of this id (on this page or an " +
    "earlier one), the X-Next-After header carries an opaque cursor: send it back as is as " +
    "`after` for the next page. A POST, so the key never travels in a URL. Failed retrievals " +
    "(a record the key does not open, or an empty answer) and new keys are limited per address.",
  request: { body: { required: true, content: { "application/json": { schema: retrieveBody } } } },
  responses: {
    200: {
      description: "The records the key opens",
      headers: z.object({
        "X-Next-After": z.string().optional().openapi({
          description:
            "More matches exist: an opaque cursor, to send back as `after` with the same id and key",
        }),
      }),
      content: { "application/json": { schema: z.array(secretSchema) } },
    },
    ...errorResponses(400, 413, 415, 429),
  },
});

// ---- Routes -------------------------------------------------------------------------------------

/** The store route takes a value up to SECRETS_MAX_VALUE_BYTES, beyond the app's general body limit. */
const storeBodyLimit: MiddlewareHandler<AppEnv> = (c, next) => {
  const { config } = c.get("deps");
  const maxSize = Math.max(config.BODY_LIMIT_BYTES, config.SECRETS_MAX_VALUE_BYTES + ENVELOPE_BYTES);
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new AppError("PAYLOAD_TOO_LARGE", `request body is larger than ${maxSize} bytes`);
    },
  })(c, next);
};

export const secretsRoutes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

secretsRoutes.on("POST", SECRETS_PATH, storeBodyLimit);

secretsRoutes
  .openapi(storeRoute, async (c) => {
    const { id, encryption_key: key, value } = c.req.valid("json");
    const tenant = tenantOf(c.get("caller"));
    const payload = await c.get("services").secrets.sealStore({ tenant, id, key, value });
    return submitJob(c, {
      contract: encryptionQueue,
      name: "secrets.store",
      payload,
      // The job's own result ({ id, stored: true }): a replay answers for the first request's job.
      onCompleted: (view) => secretStoredSchema.parse(view.result),
    });
  })
  .openapi(retrieveRoute, async (c) => {
    const body = c.req.valid("json");
    const max = c.get("deps").config.SECRETS_MAX_MATCHES;
    if (body.limit !== undefined && body.limit > max)
      throw new AppError("VALIDATION_FAILED", `limit must be at most ${max}`, [
        { path: "limit", message: `must be at most ${max}` },
      ]);
    const found = await c.get("services").secrets.retrieve({
      tenant: tenantOf(c.get("caller")),
      pattern: body.id,
      key: (body.decryption_key ?? body.encryption_key) as string,
      after: body.after,
      limit: body.limit ?? max,
      address: clientAddress(c),
      log: c.get("log"),
    });
    // base64: safe in a header as it is.
    if (found.nextAfter !== undefined) c.header("X-Next-After", found.nextAfter);
    return jsonText<z.infer<typeof secretSchema>[], 200>(c, found.json, 200);
  });
