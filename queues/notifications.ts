// Contract of the `notifications` queue: `notifications.publish` carries one notification the
// relay moved out of the outbox (the `notifications` table), by id; the worker announces it to
// the account's live streams and makes its webhook deliveries. `notifications.deliver` is one
// attempt of one webhook delivery, by id (never the secret, nor the body).
import { z } from "zod";
import { baseJobOptions, defineQueue } from "./contract.js";

export const notificationPublishSchema = z.object({ id: z.number().int().positive() });

export const webhookDeliverSchema = z.object({
  deliveryId: z.string().regex(/^msg_[\w-]+$/),
  attempt: z.number().int().min(1),
});

export const notificationsQueue = defineQueue({
  name: "notifications",
  jobs: {
    "notifications.publish": notificationPublishSchema,
    "notifications.deliver": webhookDeliverSchema,
    // Scheduled: tells the owners of keys that expire soon (identity's key.expiring).
    "identity.notifyExpiringKeys": z.object({}),
  },
  defaultJobOptions: {
    ...baseJobOptions,
    attempts: 10,
    backoff: { type: "exponential", delay: 500, jitter: 0.5 },
    removeOnComplete: { age: 3600, count: 10_000 },
  },
});
