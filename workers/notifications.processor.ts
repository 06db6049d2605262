// `notifications`: the relay (moving committed notifications out of the outbox) runs in every
// worker serving this queue; a `notifications.publish` job announces one notification to its
// account's live streams and makes its webhook deliveries; a `notifications.deliver` job is one
// attempt of one webhook delivery (its retries are jobs of their own, delayed by the schedule).
import type { Job } from "bullmq";
import { notificationsQueue } from "../queues/notifications.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

const HOUR_MS = 3_600_000;

export const notificationsProcessor: ProcessorFactory = ({
  services: { notifications, identity },
  logger,
}) => {
  const stopRelay = notifications.startRelay(logger.child({ queue: notificationsQueue.name }));
  return {
    schedules: [{ jobName: "identity.notifyExpiringKeys", everyMs: HOUR_MS }],
    async handle(job: Job, log) {
      if (job.name === "identity.notifyExpiringKeys")
        return { notified: await identity.notifyExpiringKeys(log) };
      if (job.name === "notifications.deliver") {
        const { deliveryId, attempt } = jobPayload(notificationsQueue, "notifications.deliver", job);
        return {
          deliveryId,
          attempt,
          outcome: await notifications.webhooks.deliver(deliveryId, attempt, log),
        };
      }
      const { id } = jobPayload(notificationsQueue, "notifications.publish", job);
      return { id, outcome: await notifications.publish(id) };
    },
    close: stopRelay,
  };
};
