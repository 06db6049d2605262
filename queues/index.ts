// Every queue contract, by name.
import { alertIngestionQueue } from "./alert-ingestion.js";
import { chunkHashingQueue } from "./chunk-hashing.js";
import type { QueueContract } from "./contract.js";
import { encryptionQueue } from "./encryption.js";
import { logBatchingQueue } from "./log-batching.js";
import type { QueueName } from "./names.js";
import { notificationsQueue } from "./notifications.js";

export const queueContracts: Record<QueueName, QueueContract> = {
  "alert-ingestion": alertIngestionQueue,
  "chunk-hashing": chunkHashingQueue,
  encryption: encryptionQueue,
  "log-batching": logBatchingQueue,
  notifications: notificationsQueue,
};

export { QUEUE_NAMES, type QueueName } from "./names.js";
