// `notifications`: the relay (moving committed notifications out of the outbox) runs in every
// worker serving this queue; a `notifications.publish` job announces one notification to its
// account's live streams.
import type { Job } from "bullmq";
import { notificationsQueue } from "../queues/notifications.js";
import { jobPayload, type ProcessorFactory } from "./runtime.js";

export const notificationsProcessor: ProcessorFactory = ({ services: { notifications }, logger }) => {
  const stopRelay = notifications.startRelay(logger.child({ queue: notificationsQueue.name }));
  return {
    async handle(job: Job) {
      const { id } = jobPayload(notificationsQueue, "notifications.publish", job);
      return { id, outcome: await notifications.publish(id) };
    },
    close: stopRelay,
  };
};
