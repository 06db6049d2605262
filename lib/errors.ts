// One closed set of error codes, one mapping to HTTP status, one error body.
export const ERROR_CODES = {
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  // A request body that stopped arriving (a file upload idle past FILE_IDLE_TIMEOUT_MS).
  REQUEST_TIMEOUT: 408,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RANGE_NOT_SATISFIABLE: 416,
  CHECKSUM_MISMATCH: 422,
  EMPTY_BODY: 422,
  // An Idempotency-Key sent again with a different request: the first request's answer is not its.
  IDEMPOTENCY_KEY_REUSED: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  // A stored file failed its SHA-1 check (or lost a chunk): never delivered as if it were whole.
  FILE_CORRUPTED: 500,
  SERVICE_UNAVAILABLE: 503,
  // The file store holds FILE_STORE_MAX_BYTES: an upload that would take it past that is refused.
  STORAGE_FULL: 507,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
export type ErrorStatus = (typeof ERROR_CODES)[ErrorCode];

export const codeToStatus = (code: ErrorCode): ErrorStatus => ERROR_CODES[code];

export class AppError extends Error {
  override readonly name = "AppError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Seconds, sent as Retry-After with 429 and 503. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string; details?: unknown };
}

export const errorBody = (
  code: ErrorCode,
  message: string,
  requestId: string,
  details?: unknown,
): ErrorBody => ({
  error: { code, message, requestId, ...(details === undefined ? {} : { details }) },
});

const CONNECTION_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  // Postgres SQLSTATE class 08 (connection exception) and 57P0x (server shutting down).
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
  "57P01",
  "57P02",
  "57P03",
]);

/**
 * True when an error means Redis or Postgres cannot be reached right now: the request
 * may succeed later, so the API answers 503 with Retry-After instead of 500.
 */
export function isDependencyDown(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && CONNECTION_ERROR_CODES.has(code)) return true;
  // ioredis with enableOfflineQueue: false, a closed connection, and a server that does not answer
  // within commandTimeout (frozen, or swapping).
  if (
    /Stream isn't writeable|Connection is closed|enableOfflineQueue|MaxRetriesPerRequestError|^Command timed out$/i.test(
      err.message,
    )
  )
    return true;
  // Redis replies that mean "not now": loading its dataset after a restart, busy with a script,
  // a replica without its primary, full (at maxmemory with noeviction: writes come back once
  // workers drain the queues).
  if (/^(file store: )?(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|OOM)\b/.test(err.message)) return true;
  if (err.name === "MaxRetriesPerRequestError") return true;
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isDependencyDown(cause);
}

/**
 * True for a Postgres error that no retry can fix: SQLSTATE class 22 (data exception) or 23
 * (integrity constraint violation).
 */
export function isInvalidData(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && /^2[23][0-9A-Z]{3}$/.test(code);
}

/** How long a client is told to wait (Retry-After) when a backing service is down. */
export const RETRY_AFTER_SECONDS = 5;

/** 503 with Retry-After: `what` (Redis, the file store…) cannot be reached right now. */
export const serviceUnavailable = (what: string) =>
  new AppError("SERVICE_UNAVAILABLE", `${what} is unavailable; retry later`, undefined, RETRY_AFTER_SECONDS);

/**
 * A failure no retry can fix (a corrupted file, an event Postgres refuses, a malformed payload):
 * domains throw it, and the worker runtime fails the job at once instead of retrying.
 */
export class PermanentError extends Error {
  override readonly name: string = "PermanentError";
}
