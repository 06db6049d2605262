// The catalog of notification types: what each means, the JSON schema of its `data` (from zod,
// so producers are checked against the same schema the catalog shows), and an example. A domain
// that notifies adds its types here; GET /v1/notifications/types serves the catalog.
import { z } from "zod";
import type { Role } from "../identity/caller.js";

/**
 * Who receives a type that is not addressed to one account but announced (`notifyAudience`):
 * every active account of these roles that subscribes — by default, or by its own choice
 * (PUT /v1/notifications/subscriptions/{type}).
 */
export interface Audience {
  roles: readonly Role[];
  subscribedByDefault: boolean;
}

interface NotificationType<S extends z.ZodType> {
  description: string;
  schema: S;
  example: z.infer<S>;
  audience?: Audience;
}

const type = <S extends z.ZodType>(t: NotificationType<S>) => t;

export const NOTIFICATION_TYPES = {
  "key.revoked": type({
    description:
      "One of the account's API keys was revoked; it, and the tokens exchanged for it, no longer work.",
    schema: z.object({ keyId: z.string(), prefix: z.string() }),
    example: { keyId: "key_8sK2pQ9xVb4Nm7Rt", prefix: "cvy_4Gk9Qm2X" },
  }),
  "key.expiring": type({
    description: "One of the account's API keys expires soon.",
    schema: z.object({ keyId: z.string(), prefix: z.string(), expiresAt: z.string() }),
    example: { keyId: "key_8sK2pQ9xVb4Nm7Rt", prefix: "cvy_4Gk9Qm2X", expiresAt: "2026-12-10T00:00:00.000Z" },
  }),
  "usage.rate_limited": type({
    description:
      "The client went past one of its rate limits (reads and tokens, or logged hits); sent once per window.",
    schema: z.object({ kind: z.enum(["reads", "hits"]), retryAfterSeconds: z.number().int() }),
    example: { kind: "hits", retryAfterSeconds: 42 },
  }),
  "webhook.disabled": type({
    description:
      "One of the account's webhook endpoints was disabled: it answered 410 Gone, or failed continuously.",
    schema: z.object({ endpointId: z.string(), url: z.string(), reason: z.string() }),
    example: {
      endpointId: "whep_2kS8dQ",
      url: "https://hooks.example.com/conveyor",
      reason: "no delivery succeeded for 5 days",
    },
  }),
  ...alertTypes(),
  "usage.quota_warning": type({
    description:
      "The client used most of an hourly limit (USAGE_QUOTA_WARNING_PERCENT, default 80 %); sent once per window.",
    schema: z.object({
      kind: z.enum(["reads", "hits"]),
      used: z.number().int(),
      limit: z.number().int(),
      resetSeconds: z.number().int(),
    }),
    example: { kind: "hits", used: 80_000, limit: 100_000, resetSeconds: 1_260 },
  }),
  "test.ping": type({
    description: "A test notification, sent on request.",
    schema: z.object({ message: z.string() }),
    example: { message: "hello" },
  }),
} as const;

/** alert.triggered, alert.acknowledged, alert.resolved: to the ops and admins who subscribe. */
function alertTypes() {
  const schema = z.object({
    alertId: z.string(),
    name: z.string(),
    status: z.enum(["TRIGGERED", "ACKNOWLEDGED", "RESOLVED"]),
    serviceName: z.string().nullable(),
    responderName: z.string().nullable(),
    at: z.string(),
  });
  const alert = (status: "TRIGGERED" | "ACKNOWLEDGED" | "RESOLVED", happened: string) =>
    type({
      description: `An alert ${happened}. Sent to the ops and admin accounts that subscribe (none by default).`,
      schema,
      example: {
        alertId: "a-7f3c",
        name: "Disk usage above 90%",
        status,
        serviceName: "db-primary",
        responderName: status === "TRIGGERED" ? null : "Dana",
        at: "2026-12-03T14:05:00.000Z",
      },
      audience: { roles: ["ops", "admin"], subscribedByDefault: false },
    });
  return {
    "alert.triggered": alert("TRIGGERED", "was triggered"),
    "alert.acknowledged": alert("ACKNOWLEDGED", "was acknowledged by a responder"),
    "alert.resolved": alert("RESOLVED", "was resolved"),
  };
}

export type NotificationTypeName = keyof typeof NOTIFICATION_TYPES;
export type NotificationData<T extends NotificationTypeName> = z.infer<
  (typeof NOTIFICATION_TYPES)[T]["schema"]
>;

export const isNotificationType = (name: string): name is NotificationTypeName => name in NOTIFICATION_TYPES;

/** The catalog as GET /v1/notifications/types serves it. */
export const notificationCatalog = () =>
  Object.entries(NOTIFICATION_TYPES).map(([name, t]) => ({
    name,
    description: t.description,
    schema: z.toJSONSchema(t.schema),
    example: t.example,
    audience: audienceOf(name as NotificationTypeName) ?? null,
  }));

/** The audience of an announced type; undefined for a type addressed to one account. */
export const audienceOf = (name: NotificationTypeName): Audience | undefined => {
  const t: { audience?: Audience } = NOTIFICATION_TYPES[name];
  return t.audience;
};
