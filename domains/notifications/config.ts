// Settings of the notifications domain (zod shapes; lib/config.ts reads the environment): what
// webhook endpoints may point at, and when failed deliveries are tried again.
import { z } from "zod";
import type { ConfigOf } from "../../lib/config.js";

/** 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about a day (Standard Webhooks). */
export const DEFAULT_RETRY_SCHEDULE = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

export const notificationsConfig = {
  // true: webhook URLs may resolve to loopback, private, link-local, unique-local and CGNAT
  // addresses (development and tests). Cloud metadata addresses stay refused.
  WEBHOOKS_ALLOW_PRIVATE_ADDRESSES: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true"),
  // Seconds between a failed webhook attempt and the next, comma-separated; after the last, dead.
  WEBHOOKS_RETRY_SCHEDULE: z
    .string()
    .default(DEFAULT_RETRY_SCHEDULE.join(","))
    .transform((raw, ctx) => {
      const delays = raw.split(",").map((s) => Number(s.trim()));
      if (delays.length === 0 || delays.some((d) => !Number.isInteger(d) || d < 0 || d > 7 * 86_400)) {
        ctx.addIssue({ code: "custom", message: "comma-separated whole seconds (0–604800) expected" });
        return z.NEVER;
      }
      return delays;
    }),
  // An endpoint none of whose attempts has succeeded for this long is disabled when one more
  // delivery goes dead, and its owner notified (`webhook.disabled`). Default: 5 days.
  WEBHOOKS_DISABLE_AFTER_FAILING_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .default(5 * 86_400),
  // Deliveries in flight at once per endpoint, across every worker; more wait.
  WEBHOOKS_MAX_IN_FLIGHT_PER_ENDPOINT: z.coerce.number().int().min(1).max(100).default(4),
};

export type NotificationsConfig = ConfigOf<typeof notificationsConfig>;

/** What a worker serving `notifications` lacks: it unseals webhook signing secrets to sign. */
export function notificationsWorkerConfigIssues(c: { ACCOUNT_DATA_KEY?: string | undefined }): string[] {
  return c.ACCOUNT_DATA_KEY === undefined
    ? [
        "ACCOUNT_DATA_KEY: required by a worker serving `notifications` (it unseals webhook signing secrets); the API's value",
      ]
    : [];
}
