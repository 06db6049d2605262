// Which processor serves which queue.
import type { QueueName } from "../queues/names.js";
import { alertIngestionProcessor } from "./alert-ingestion.processor.js";
import type { ProcessorFactory } from "./runtime.js";

export const processorFactories: Record<QueueName, ProcessorFactory> = {
  "alert-ingestion": alertIngestionProcessor,
};
