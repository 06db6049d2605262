// The pino root logger. Secrets are redacted by path, so a careless log call cannot print them,
// and errors are logged without the values their queries ran with.
import { DrizzleQueryError } from "drizzle-orm";
import { type Logger, pino } from "pino";

export type { Logger };

const REDACT = [
  "req.headers.authorization",
  "req.headers.cookie",
  "headers.authorization",
  "*.password",
  "*.encryption_key",
  "*.decryption_key",
  "*.token",
  "*.secret",
  // A sealed job payload (secrets.store) is ciphertext, but it has no business in logs either.
  "*.sealed",
];

// Deep enough for drizzle's error around postgres.js's, around a socket's.
const MAX_CAUSE_DEPTH = 3;

/**
 * An error as the logs show it: type, message, code, stack, and its causes the same way. Nothing
 * else: the fields drivers hang on errors (postgres.js's `parameters`, `query`, `detail`;
 * drizzle's `params`; ioredis's `command.args`) carry the values a query ran with, such as the
 * filters of a request whose query string the request log leaves out on purpose.
 */
export function errorForLog(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error)) return err;
  // drizzle writes the parameters into the message itself ("Failed query: …\nparams: …").
  const message = err instanceof DrizzleQueryError ? `Failed query: ${err.query}` : err.message;
  // The stack's first lines repeat the message: keep only the frames.
  const frames = (err.stack ?? "").split("\n").filter((line) => /^\s+at /.test(line));
  const { code, cause, errors } = err as { code?: unknown; cause?: unknown; errors?: unknown };
  const deeper = depth < MAX_CAUSE_DEPTH;
  return {
    type: err.constructor.name,
    message,
    ...(code === undefined ? {} : { code }),
    stack: [`${err.name}: ${message}`, ...frames].join("\n"),
    ...(cause !== undefined && deeper ? { cause: errorForLog(cause, depth + 1) } : {}),
    // AggregateError: a connection refused on every address of a host.
    ...(Array.isArray(errors) && deeper ? { errors: errors.map((e) => errorForLog(e, depth + 1)) } : {}),
  };
}

export function createLogger(
  opts: { level: string; name?: string },
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    {
      level: opts.level,
      base: { service: opts.name ?? "conveyor", pid: process.pid },
      redact: { paths: REDACT, censor: "[redacted]" },
      serializers: { err: errorForLog },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
