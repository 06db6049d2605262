// Every queue contract, by name.
import { alertIngestionQueue } from "./alert-ingestion.js";
import type { QueueContract } from "./contract.js";
import type { QueueName } from "./names.js";

export const queueContracts: Record<QueueName, QueueContract> = {
  "alert-ingestion": alertIngestionQueue,
};

export { QUEUE_NAMES, type QueueName } from "./names.js";
