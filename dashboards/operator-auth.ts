// Who may open the operator surfaces: an ops or admin account's API key or access token (as a
// header, or as the password of HTTP Basic, which a browser prompts for), or HTTP Basic against
// ADMIN_USER / ADMIN_PASSWORD (or the all-in-one dev start's generated password); failed logins
// throttled per address, and a same-origin rule for anything that writes.

import type { Context, MiddlewareHandler } from "hono";
import type { Redis } from "ioredis";
import { looksLikeApiKey } from "../domains/identity/api-keys.js";
import { ANONYMOUS } from "../domains/identity/caller.js";
import {
  type Access,
  AUTH_REALM,
  type AuthorizeMiddleware,
  admitCaller,
  OPERATORS,
  parseBasicAuth,
} from "../http/access.js";
import { clientAddress } from "../http/client-address.js";
import type { AppDeps, AppEnv } from "../http/context.js";
import { sendError } from "../http/errors.js";
import { AppError } from "../lib/errors.js";
import { createRateLimit, type RateLimit } from "../lib/rate-limit.js";
import { secureEqual } from "../lib/secure-compare.js";

/** The user name of the all-in-one dev start when ADMIN_USER is not set. */
export const DEV_USER = "admin";

export type OperatorCredentials =
  | { enabled: true; user: string; password: string; source: "config" | "dev" }
  | { enabled: false; reason: string };

/** Configured credentials win; the dev password only stands in when ADMIN_PASSWORD is absent. */
export function resolveOperatorCredentials(
  deps: Pick<AppDeps, "config" | "devDashboardsPassword">,
): OperatorCredentials {
  const { ADMIN_USER: user, ADMIN_PASSWORD: password } = deps.config;
  if (user !== undefined && password !== undefined)
    return { enabled: true, user, password, source: "config" };
  if (password === undefined && deps.devDashboardsPassword)
    return { enabled: true, user: user ?? DEV_USER, password: deps.devDashboardsPassword, source: "dev" };
  const missing = [user === undefined && "ADMIN_USER", password === undefined && "ADMIN_PASSWORD"].filter(
    Boolean,
  );
  return {
    enabled: false,
    reason: `dashboards are disabled: ${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} not set`,
  };
}

/** Failed operator logins allowed per address per window, before 429. */
export const FAILED_LOGIN_LIMIT = 10;
export const FAILED_LOGIN_WINDOW_SECONDS = 60;

/**
 * The failed-login limit of one app (built once, in mountDashboards). While Redis is down it
 * counts in this process instead of refusing: operators need the dashboards most during an outage.
 */
export const createFailedLoginLimit = (redis: Redis, prefix: string): RateLimit =>
  createRateLimit(redis, {
    keyPrefix: `${prefix}:dashboards:failed-login`,
    points: FAILED_LOGIN_LIMIT,
    windowSeconds: FAILED_LOGIN_WINDOW_SECONDS,
    message: "too many failed operator logins from this address; retry later",
    whenRedisIsDown: "memory",
  });

/** The declaration of the operator surfaces, for the route walk and the docs. */
export const OPERATOR_ACCESS: Access = { roles: OPERATORS, operatorLogin: true };

const basicChallenge = (c: Context<AppEnv>) => {
  c.header("WWW-Authenticate", `Basic realm="${AUTH_REALM}", charset="UTF-8"`);
  c.header("Cache-Control", "no-store");
};

/** Whether a request brings an account's credential rather than the operator login's password. */
function bringsAccountCredential(c: Context<AppEnv>, basic: { password: string } | undefined): boolean {
  if (basic) return looksLikeApiKey(basic.password);
  return c.req.header("X-API-Key") !== undefined || c.req.header("Authorization") !== undefined;
}

export function operatorAuth(credentials: OperatorCredentials, failedLogins: RateLimit): AuthorizeMiddleware {
  const middleware: MiddlewareHandler<AppEnv> = async (c, next) => {
    const presented = parseBasicAuth(c.req.header("Authorization"));
    if (bringsAccountCredential(c, presented)) {
      // The API's own authentication: its failed-authentication limit, its cache, 401 or 403.
      try {
        c.set("caller", await admitCaller(c, OPERATOR_ACCESS));
      } catch (err) {
        // A browser asked for Basic credentials: it prompts again on the Basic challenge only.
        if (err instanceof AppError && err.code === "UNAUTHORIZED") basicChallenge(c);
        throw err;
      }
      return next();
    }
    if (credentials.enabled && presented) {
      const address = clientAddress(c);
      // Reserved before the check, so concurrent guesses cannot all pass one count made before any
      // of them failed; a success gives it back. Past the limit even the right password waits.
      await failedLogins.consume(address).catch((err: unknown) => {
        if (err instanceof AppError && err.code === "RATE_LIMITED")
          c.get("log").warn({ address, retryAfter: err.retryAfter }, "too many failed operator logins");
        throw err;
      });
      // Both comparisons always run, so the time taken does not tell which one failed.
      const userOk = secureEqual(presented.user, credentials.user);
      const passwordOk = secureEqual(presented.password, credentials.password);
      if (userOk && passwordOk) {
        await failedLogins
          .reward(address)
          .catch((err: Error) =>
            c.get("log").warn({ err: { message: err.message } }, "dashboards: could not give a login back"),
          );
        c.set("caller", ANONYMOUS);
        return next();
      }
    }
    // RFC 7235 requires the challenge on every 401, even when no credentials can succeed; the
    // body then says why, and the reason was logged when the dashboards were mounted.
    basicChallenge(c);
    return sendError(
      c,
      "UNAUTHORIZED",
      credentials.enabled
        ? "operator credentials are required: the operator login, or an ops or admin API key"
        : `${credentials.reason}; only an ops or admin API key (as the Basic password) opens the dashboards`,
    );
  };
  return Object.assign(middleware, { access: OPERATOR_ACCESS });
}

const UNSAFE_METHOD = /^(?!GET$|HEAD$|OPTIONS$)/;

/**
 * Browsers resend Basic credentials on their own, so a page on another site could make an
 * operator's browser pause, empty or obliterate a queue through Bull Board's API (its Hono adapter
 * parses any body as JSON, so a plain form post gets through). Writes must come from this origin:
 * browsers say where a request comes from in Sec-Fetch-Site or Origin; a request with neither is
 * not a browser's, and cannot ride on an operator's session.
 */
export const sameOriginWrites: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (UNSAFE_METHOD.test(c.req.method)) {
    const site = c.req.header("Sec-Fetch-Site");
    const origin = c.req.header("Origin");
    const allowed =
      site !== undefined
        ? site === "same-origin"
        : origin === undefined || origin === new URL(c.req.url).origin;
    if (!allowed)
      return sendError(c, "FORBIDDEN", "dashboard actions must come from the dashboard's own origin");
  }
  return next();
};
