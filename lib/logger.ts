// The pino root logger. Secrets are redacted by path, so a careless log call cannot print them.
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

export function createLogger(
  opts: { level: string; name?: string },
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    {
      level: opts.level,
      base: { service: opts.name ?? "conveyor", pid: process.pid },
      redact: { paths: REDACT, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
