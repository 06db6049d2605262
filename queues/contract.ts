// A queue contract is data: its name, its job names with a zod payload schema each, and the
// default job options. API, workers and dashboards all import contracts; nothing else
// names a queue.
import { type DefaultJobOptions, type Job, type JobsOptions, Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { randomId } from "../lib/ids.js";
import type { Logger } from "../lib/logger.js";
import type { QueueName } from "./names.js";

export interface QueueContract<J extends Record<string, z.ZodType> = Record<string, z.ZodType>> {
  name: QueueName;
  jobs: J;
  defaultJobOptions: DefaultJobOptions;
}

export type JobName<C extends QueueContract> = Extract<keyof C["jobs"], string>;
export type JobPayload<C extends QueueContract, N extends JobName<C>> = z.infer<C["jobs"][N]>;

/** Retries with exponential backoff and jitter; finished jobs trimmed by age and count. */
export const baseJobOptions = {
  attempts: 5,
  backoff: { type: "exponential", delay: 1_000, jitter: 0.5 },
  removeOnComplete: { age: 24 * 3600, count: 10_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 50_000 },
} satisfies DefaultJobOptions;

export function defineQueue<J extends Record<string, z.ZodType>>(
  contract: QueueContract<J>,
): QueueContract<J> {
  return contract;
}

export function createQueue(
  contract: QueueContract,
  connection: Redis,
  prefix: string,
  logger: Logger,
): Queue {
  const queue = new Queue(contract.name, {
    connection,
    prefix,
    defaultJobOptions: contract.defaultJobOptions,
  });
  queue.on("error", (err) => logger.error({ err, queue: contract.name }, "queue error"));
  return queue;
}

/**
 * Validates the payload against the contract and adds the job under an unguessable id
 * (or `opts.jobId` when the caller chose one, as idempotent submissions do).
 */
export async function enqueue<C extends QueueContract, N extends JobName<C>>(
  queue: Queue,
  contract: C,
  name: N,
  payload: JobPayload<C, N>,
  opts: JobsOptions = {},
): Promise<Job> {
  const schema = contract.jobs[name];
  if (!schema) throw new Error(`queue ${contract.name} has no job ${name}`);
  const data = schema.parse(payload);
  return queue.add(name, data, { ...opts, jobId: opts.jobId ?? randomId() });
}

/** Parses a job's data in the processor: a payload may come from an older deploy. */
export function parseJobData<C extends QueueContract, N extends JobName<C>>(
  contract: C,
  name: N,
  data: unknown,
): JobPayload<C, N> {
  const schema = contract.jobs[name];
  if (!schema) throw new Error(`queue ${contract.name} has no job ${name}`);
  return schema.parse(data) as JobPayload<C, N>;
}
