// The catalog of notification types: what each means, the JSON schema of its `data` (from zod,
// so producers are checked against the same schema the catalog shows), and an example. A domain
// that notifies adds its types here; GET /v1/notifications/types serves the catalog.
import { z } from "zod";

interface NotificationType<S extends z.ZodType> {
  description: string;
  schema: S;
  example: z.infer<S>;
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
  "test.ping": type({
    description: "A test notification, sent on request.",
    schema: z.object({ message: z.string() }),
    example: { message: "hello" },
  }),
} as const;

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
  }));
