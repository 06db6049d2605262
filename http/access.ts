// The one authorization model. Every route declares who may call it (an Access); `authorize`
// turns that declaration into the route's middleware, and `guardedRoute` into its OpenAPI
// `security` entry and 401/403/429 answers as well, so the documentation cannot drift from
// what runs. The middleware authenticates the credential (an API key, or an access token from
// POST /v1/tokens), sets the caller on the context, checks the role, and counts the request
// against the caller's rate limit, with the IETF RateLimit headers on every answer.
import { createRoute, type RouteConfig } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { looksLikeApiKey } from "../domains/identity/api-keys.js";
import { ANONYMOUS, type Caller, ROLES, type Role } from "../domains/identity/caller.js";
import type { AnonymousArea } from "../domains/identity/config.js";
import { AuthenticationError } from "../domains/identity/service.js";
import { AppError } from "../lib/errors.js";
import { secureEqual } from "../lib/secure-compare.js";
import { clientAddress } from "./client-address.js";
import type { AppEnv } from "./context.js";

export const AUTH_REALM = "conveyor";

export interface Access {
  /** Roles of the accounts that may call. */
  roles: readonly Role[];
  /**
   * Who may call without a credential: `public` anyone, always (health, the API's documentation;
   * a credential is not even read); an AnonymousArea, callers without credentials when
   * ANONYMOUS_ACCESS lists it; `alert-emitters`, callers without credentials unless
   * ALERTS_INGEST_TOKEN is set, and then callers presenting it as a Bearer token;
   * `anonymous-tenant`, callers without credentials (or with that token) wherever any anonymous
   * submission is open, on the anonymous tenant's data only (job status).
   */
  anonymous?: "public" | AnonymousArea | "alert-emitters" | "anonymous-tenant";
  /** Only an API key will do, not an access token (the token exchange itself). */
  apiKeyOnly?: boolean;
  /**
   * The operator surfaces: the configured operator login (HTTP Basic, ADMIN_USER/ADMIN_PASSWORD)
   * lets in too, and an API key may come as a Basic password, which a browser can prompt for.
   */
  operatorLogin?: boolean;
  /**
   * The route counts its callers against limits of its own instead of the per-account limit (the
   * usage product's hits, which a batch counts by the hit): the middleware does not count them.
   */
  ownRateLimit?: boolean;
}

export const ANY_ROLE: readonly Role[] = ROLES;
export const OPERATORS: readonly Role[] = ["admin", "ops"];
export const ADMINS: readonly Role[] = ["admin"];

export const PUBLIC: Access = { roles: ANY_ROLE, anonymous: "public" };

/** An authorize() middleware keeps its declaration, so a test can walk every route's. */
export type AuthorizeMiddleware = MiddlewareHandler<AppEnv> & { access: Access };

/** Whether a caller without credentials may call a route declared with `access`, here. */
export function anonymousAllowed(access: Access, config: AppEnv["Variables"]["deps"]["config"]): boolean {
  switch (access.anonymous) {
    case undefined:
      return false;
    case "public":
      return true;
    case "alert-emitters":
      return config.ALERTS_INGEST_TOKEN === undefined;
    case "anonymous-tenant":
      return config.ALERTS_INGEST_TOKEN === undefined || (config.ANONYMOUS_ACCESS?.length ?? 0) > 0;
    default:
      return config.ANONYMOUS_ACCESS?.includes(access.anonymous) ?? false;
  }
}

type Presented =
  | { kind: "api-key"; value: string }
  | { kind: "token"; value: string }
  | { kind: "other"; value: string };

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** user and password of an `Authorization: Basic …` header, or undefined when there is none. */
export function parseBasicAuth(header: string | undefined): { user: string; password: string } | undefined {
  const encoded = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "")?.[1];
  if (!encoded) return undefined;
  const decoded = Buffer.from(encoded, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  // RFC 7617: the user id cannot contain a colon, the password can.
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;

/**
 * The credential of a request: `X-API-Key`, or `Authorization: Bearer <key or token>`; on the
 * operator surfaces also an API key as the password of `Authorization: Basic`.
 */
function presentedCredential(c: Context<AppEnv>, access: Access): Presented | "malformed" | undefined {
  const apiKey = c.req.header("X-API-Key");
  if (apiKey !== undefined) return { kind: "api-key", value: apiKey.trim() };
  const authorization = c.req.header("Authorization");
  if (authorization === undefined) return undefined;
  if (access.operatorLogin) {
    const password = parseBasicAuth(authorization)?.password;
    if (password !== undefined) return { kind: "api-key", value: password };
  }
  const value = BEARER.exec(authorization)?.[1];
  if (value === undefined) return "malformed";
  if (looksLikeApiKey(value)) return { kind: "api-key", value };
  if (JWT_SHAPE.test(value)) return { kind: "token", value };
  return { kind: "other", value };
}

/** 401 with the challenge RFC 6750 asks for; `error` when a credential was presented and failed. */
function unauthorized(c: Context<AppEnv>, message: string, presented: boolean): AppError {
  const error = presented
    ? `, error="invalid_token", error_description="${message.replace(/[^\x20-\x7e]|"/g, "'")}"`
    : "";
  c.header("WWW-Authenticate", `Bearer realm="${AUTH_REALM}"${error}`);
  c.header("Cache-Control", "no-store");
  return new AppError("UNAUTHORIZED", message);
}

async function authenticate(c: Context<AppEnv>, access: Access): Promise<Caller> {
  const { config } = c.get("deps");
  const identity = c.get("services").identity;
  const credential = presentedCredential(c, access);
  if (credential === undefined) {
    if (anonymousAllowed(access, config)) return ANONYMOUS;
    throw unauthorized(
      c,
      "credentials are required: an API key (X-API-Key, or Authorization: Bearer) or an access token",
      false,
    );
  }
  // The stock alert emitter's shared token, where the route takes it.
  if (
    (access.anonymous === "alert-emitters" || access.anonymous === "anonymous-tenant") &&
    config.ALERTS_INGEST_TOKEN !== undefined &&
    credential !== "malformed" &&
    credential.kind === "other" &&
    secureEqual(credential.value, config.ALERTS_INGEST_TOKEN)
  )
    return ANONYMOUS;

  const address = clientAddress(c);
  const blocked = identity.blockedFor(address);
  if (blocked > 0)
    throw new AppError(
      "RATE_LIMITED",
      "too many failed authentications from this address; retry later",
      undefined,
      blocked,
    );
  try {
    if (credential === "malformed")
      throw new AuthenticationError("the Authorization header is not `Bearer <credential>`");
    if (credential.kind === "other")
      throw new AuthenticationError("the credential is neither an API key (cvy_...) nor an access token");
    if (access.apiKeyOnly && credential.kind !== "api-key")
      throw new AuthenticationError("this route takes an API key, not an access token");
    return credential.kind === "api-key"
      ? await identity.authenticateApiKey(credential.value)
      : await identity.authenticateToken(credential.value);
  } catch (err) {
    if (!(err instanceof AuthenticationError)) throw err;
    c.get("log").info({ address, reason: err.message }, "authentication failed");
    await identity.recordFailedAuthentication(address);
    throw unauthorized(c, err.message, true);
  }
}

/**
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers): the caller's window,
 * under the policy's name (`account`: the per-account limit every route has).
 */
export function rateLimitHeaders(
  c: Context<AppEnv>,
  state: { limit: number; remaining: number; resetSeconds: number; windowSeconds: number },
  policy = "account",
) {
  c.header("RateLimit-Policy", `"${policy}";q=${state.limit};w=${state.windowSeconds}`);
  c.header("RateLimit", `"${policy}";r=${state.remaining};t=${state.resetSeconds}`);
}

/**
 * The account calling a route that anonymous callers may not call, or that serves accounts only
 * (its own data): 401 for an anonymous caller.
 */
export function accountCaller(c: Context<AppEnv>): Extract<Caller, { kind: "account" }> {
  const caller = c.get("caller");
  if (caller.kind !== "account") throw new AppError("UNAUTHORIZED", "an API key or token is required");
  return caller;
}

/** The caller of a request to a route declared with `access`: 401 or 403 when it may not call. */
export async function admitCaller(c: Context<AppEnv>, access: Access): Promise<Caller> {
  const caller = await authenticate(c, access);
  if (caller.kind === "account" && !access.roles.includes(caller.role))
    throw new AppError(
      "FORBIDDEN",
      `this route is for ${access.roles.join(", ")} accounts; this credential's account is ${caller.role}`,
    );
  const adminsFrom = c.get("deps").config.ADMIN_IP_ALLOWLIST;
  if (
    caller.kind === "account" &&
    caller.role === "admin" &&
    adminsFrom &&
    !adminsFrom.contains(clientAddress(c))
  )
    throw new AppError("FORBIDDEN", "admin accounts may not call from this address (ADMIN_IP_ALLOWLIST)");
  return caller;
}

/** The middleware of a route declared with `access`. */
export function authorize(access: Access): AuthorizeMiddleware {
  const middleware: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (access.anonymous === "public") {
      c.set("caller", ANONYMOUS);
      return next();
    }
    const caller = await admitCaller(c, access);
    c.set("caller", caller);
    // Emitters posting alert events anonymously are bounded by the queue's depth limit instead:
    // they are one tenant's worth of machines, not a client to ration.
    if (caller.kind === "anonymous" && access.anonymous === "alert-emitters") return next();
    if (access.ownRateLimit) return next();
    const identity = c.get("services").identity;
    try {
      rateLimitHeaders(c, await identity.limitRequest(caller));
    } catch (err) {
      if (err instanceof AppError && err.code === "RATE_LIMITED") {
        const policy = identity.requestPolicy(caller);
        rateLimitHeaders(c, {
          ...policy,
          remaining: 0,
          resetSeconds: err.retryAfter ?? policy.windowSeconds,
        });
      }
      throw err;
    }
    return next();
  };
  return Object.assign(middleware, { access });
}

/** The OpenAPI security requirement of a declaration (`{}` among them: credentials optional). */
export function securityOf(access: Access): Record<string, string[]>[] {
  if (access.anonymous === "public") return [];
  const credentials: Record<string, string[]>[] = access.apiKeyOnly
    ? [{ apiKey: [] }]
    : [{ apiKey: [] }, { bearer: [] }];
  return access.anonymous === undefined ? credentials : [...credentials, {}];
}

/** The access extension every guarded operation carries in /openapi.json. */
export const ACCESS_EXTENSION = "x-conveyor-access";

const authResponses = (access: Access) => {
  if (access.anonymous === "public") return {};
  const body = { content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };
  return {
    401: { description: "No credential, or one that lets no one in (see WWW-Authenticate)", ...body },
    ...(access.roles.length < ROLES.length
      ? {
          403: { description: `A valid credential of a role other than ${access.roles.join(", ")}`, ...body },
        }
      : {}),
    429: { description: "Past the account's rate limit (see Retry-After and RateLimit)", ...body },
  };
};

/**
 * createRoute with the access declaration: its middleware runs before the route's validators
 * (a caller without access learns nothing about what the route would accept), and the OpenAPI
 * operation gets its `security`, its 401/403/429 and the declaration itself.
 */
export function guardedRoute<P extends string, R extends Omit<RouteConfig, "path"> & { path: P }>(
  access: Access,
  route: R,
) {
  const own = route.middleware === undefined ? [] : [route.middleware].flat();
  return createRoute({
    ...route,
    middleware: [authorize(access), ...own],
    security: securityOf(access),
    responses: { ...authResponses(access), ...route.responses },
    [ACCESS_EXTENSION]: {
      roles: access.roles,
      anonymous: access.anonymous ?? null,
      apiKeyOnly: access.apiKeyOnly ?? false,
      ownRateLimit: access.ownRateLimit ?? false,
    },
  } as R);
}
