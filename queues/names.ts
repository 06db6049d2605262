// The queue names, spelled once. Every queue's contract lives in its own file beside this one.
export const QUEUE_NAMES = [
  "alert-ingestion",
  "chunk-hashing",
  "encryption",
  "log-batching",
  "notifications",
] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];
