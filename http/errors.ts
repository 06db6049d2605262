// The one error handler and the one 404: every failure leaves as the same JSON body.
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  AppError,
  codeToStatus,
  type ErrorCode,
  errorBody,
  isDependencyDown,
  RETRY_AFTER_SECONDS,
} from "../lib/errors.js";
import type { AppEnv } from "./context.js";

export function sendError(
  c: Context<AppEnv>,
  code: ErrorCode,
  message: string,
  details?: unknown,
  retryAfter?: number,
) {
  if (retryAfter !== undefined) c.header("Retry-After", String(retryAfter));
  return c.json(
    errorBody(code, message, c.get("requestId") ?? "", details),
    codeToStatus(code) as ContentfulStatusCode,
  );
}

const httpStatusToCode: Partial<Record<number, ErrorCode>> = {
  400: "BAD_REQUEST",
  401: "UNAUTHORIZED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  405: "METHOD_NOT_ALLOWED",
  413: "PAYLOAD_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
  429: "RATE_LIMITED",
};

export function onError(err: Error, c: Context<AppEnv>) {
  if (err instanceof AppError) return sendError(c, err.code, err.message, err.details, err.retryAfter);
  if (err instanceof HTTPException) {
    const code = httpStatusToCode[err.status];
    if (code) {
      // Hono's JSON validator throws a 400 for a body that does not parse.
      const invalidJson = err.status === 400 && /json/i.test(err.message);
      return sendError(
        c,
        invalidJson ? "INVALID_JSON" : code,
        invalidJson ? "request body is not valid JSON" : err.message,
      );
    }
  }
  const log = c.get("log");
  if (isDependencyDown(err)) {
    log?.warn({ err }, "dependency unavailable");
    return sendError(
      c,
      "SERVICE_UNAVAILABLE",
      "a backing service is unavailable; retry later",
      undefined,
      RETRY_AFTER_SECONDS,
    );
  }
  log?.error({ err }, "unhandled error");
  return sendError(c, "INTERNAL", "internal error");
}

export const notFound = (c: Context<AppEnv>) =>
  sendError(c, "NOT_FOUND", `no route for ${c.req.method} ${c.req.path}`);
