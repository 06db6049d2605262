// Which processor serves which queue.
import type { QueueName } from "../queues/names.js";
import { alertIngestionProcessor } from "./alert-ingestion.processor.js";
import { chunkHashingProcessor } from "./chunk-hashing.processor.js";
import { encryptionProcessor } from "./encryption.processor.js";
import { logBatchingProcessor } from "./log-batching.processor.js";
import { notificationsProcessor } from "./notifications.processor.js";
import type { ProcessorFactory } from "./runtime.js";

export const processorFactories: Record<QueueName, ProcessorFactory> = {
  "alert-ingestion": alertIngestionProcessor,
  "chunk-hashing": chunkHashingProcessor,
  encryption: encryptionProcessor,
  "log-batching": logBatchingProcessor,
  notifications: notificationsProcessor,
};
