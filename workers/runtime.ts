// Worker runtime: one BullMQ Worker per selected queue, a child logger per job, and a close
// that lets active jobs finish. The deadline lives in lib/shutdown.ts, because
// worker.close() has none and hangs while Redis is unreachable.
import { hostname } from "node:os";
import { DelayedError, type Job, Queue, UnrecoverableError, WaitingError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { WorkerConfig } from "../domains/config.js";
import type { Services } from "../domains/services.js";
import { isDependencyDown, PermanentError } from "../lib/errors.js";
import type { Logger } from "../lib/logger.js";
import { createRedis } from "../lib/redis.js";
import { type JobName, type JobPayload, parseJobData, type QueueContract } from "../queues/contract.js";
import type { QueueName } from "../queues/names.js";

/** What a processor is built from: the domain services it adapts jobs to. */
export interface ProcessorDeps {
  config: WorkerConfig;
  logger: Logger;
  services: Services;
}

/** What a queue's processor module provides: a handler per job, an optional close and failure hook. */
export interface Processor {
  handle(job: Job, log: Logger): Promise<unknown>;
  /**
   * Runs once a job has failed for good, however it failed: in handle (attempts spent, an
   * unrecoverable error) or before it (a payload that stalled too often, which BullMQ fails
   * without handing it over).
   */
  failed?(job: Job): Promise<void>;
  close?(): Promise<void>;
  /**
   * Jobs the queue runs on a schedule (BullMQ job schedulers), upserted by every worker that
   * serves it: one scheduler per job name, however many replicas start.
   */
  schedules?: readonly { jobName: string; everyMs: number }[];
}

export type ProcessorFactory = (deps: ProcessorDeps) => Processor;

export interface RunningWorkers {
  workers: Worker[];
  /** Stops taking jobs, waits for active ones, then closes connections. No deadline of its own. */
  close(): Promise<void>;
}

/** One queue to serve: its name, how many jobs at once, and its processor. */
export interface QueueAssignment {
  queue: string;
  concurrency: number;
  processor: Processor;
}

/** The queues a worker config selects (WORKER_QUEUES, WORKER_CONCURRENCY_*), each with its processor. */
export function assignQueues(
  deps: ProcessorDeps,
  factories: Record<QueueName, ProcessorFactory>,
  queues: readonly QueueName[] = deps.config.WORKER_QUEUES,
): QueueAssignment[] {
  return queues.map((queue) => ({
    queue,
    concurrency: deps.config.concurrency[queue],
    processor: factories[queue](deps),
  }));
}

const OUTAGE_DELAY_MS = 500;
const OUTAGE_DELAY_MAX_MS = 30_000;

/** Capped exponential delay with jitter for a job that found a backing service unreachable. */
export const outageDelayMs = (tries: number): number => {
  const base = Math.min(OUTAGE_DELAY_MAX_MS, OUTAGE_DELAY_MS * 2 ** Math.min(Math.max(tries - 1, 0), 16));
  return Math.round(base * (0.5 + Math.random() * 0.5));
};

export function startWorkers(opts: {
  config: Pick<WorkerConfig, "REDIS_URL" | "QUEUE_PREFIX">;
  logger: Logger;
  queues: QueueAssignment[];
  /** Milliseconds of lock before a job of a killed worker counts as stalled and is retried elsewhere. */
  stalledIntervalMs?: number;
}): RunningWorkers {
  const { config, logger } = opts;
  const running: { worker: Worker; processor: Processor; connection: Redis }[] = [];
  for (const { queue, concurrency, processor } of opts.queues) {
    const connection = createRedis(config.REDIS_URL, "worker", logger);
    const worker = new Worker(
      queue,
      async (job: Job, token?: string) => {
        // close() stops the fetch loop, but a job whose marker BullMQ had already popped is
        // still handed over; a stopping process must not start it (its deadline could cut it
        // off), so it goes back to the head of the wait list for another replica.
        if (worker.closing && token) {
          await job.moveToWait(token);
          throw new WaitingError();
        }
        const log = logger.child({ queue, jobName: job.name, jobId: job.id, attempt: job.attemptsMade + 1 });
        try {
          return await processor.handle(job, log);
        } catch (err) {
          // Postgres (or Redis) unreachable: wait without spending an attempt, however long the
          // outage lasts, so work acknowledged with a 202 lands once it is back.
          if (token && isDependencyDown(err)) {
            const delayMs = outageDelayMs(job.attemptsStarted);
            log.warn({ delayMs, err }, "backing service unreachable; job delayed");
            await job.moveToDelayed(Date.now() + delayMs, token);
            throw new DelayedError();
          }
          // A domain's "no retry can fix this" fails the job at once.
          if (err instanceof PermanentError) throw new UnrecoverableError(err.message);
          throw err;
        }
      },
      {
        connection,
        prefix: config.QUEUE_PREFIX,
        concurrency,
        // Recorded on every job it takes (job.processedBy, Bull Board): which replica ran it.
        name: `${hostname()}:${process.pid}`,
        // Jobs of a killed worker are picked up by another replica after this long.
        stalledInterval: opts.stalledIntervalMs ?? 15_000,
        lockDuration: opts.stalledIntervalMs ?? 15_000,
        maxStalledCount: 2,
      },
    );
    worker.on("error", (err) => logger.error({ err, queue }, "worker error"));
    worker.on("failed", (job, err) => {
      const final = !job || err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      logger[final ? "error" : "warn"](
        {
          queue,
          jobName: job?.name,
          jobId: job?.id,
          attempt: job?.attemptsMade,
          err,
        },
        final ? "job failed" : "job failed; will retry",
      );
      if (final && job && processor.failed)
        processor
          .failed(job)
          .catch((hookErr: unknown) =>
            logger.warn({ err: hookErr, queue, jobId: job.id }, "could not clean up a failed job"),
          );
    });
    running.push({ worker, processor, connection });
    if (processor.schedules?.length)
      void upsertSchedules(queue, processor.schedules, connection, config, logger);
    logger.info({ queue, concurrency }, "worker started");
  }
  return {
    workers: running.map((r) => r.worker),
    async close() {
      await Promise.allSettled(running.map((r) => r.worker.close()));
      await Promise.allSettled(running.map((r) => r.processor.close?.()));
      await Promise.allSettled(running.map((r) => r.connection.quit()));
    },
  };
}

async function upsertSchedules(
  queue: string,
  schedules: NonNullable<Processor["schedules"]>,
  connection: Redis,
  config: Pick<WorkerConfig, "QUEUE_PREFIX">,
  logger: Logger,
): Promise<void> {
  const producer = new Queue(queue, { connection, prefix: config.QUEUE_PREFIX });
  try {
    for (const { jobName, everyMs } of schedules)
      await producer.upsertJobScheduler(jobName, { every: everyMs }, { name: jobName, data: {} });
  } catch (err) {
    logger.warn({ err, queue }, "could not schedule the queue's recurring jobs; the next start will");
  } finally {
    await producer.close().catch(() => {});
  }
}

/** Wraps a payload-parse failure: no retry can fix a payload that does not match its contract. */
export function unrecoverable(err: unknown): never {
  throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
}

/**
 * The job's payload, checked against its contract; a job of another name, or a payload no retry
 * can make valid (from an older or broken producer), fails at once as UnrecoverableError.
 */
export function jobPayload<C extends QueueContract, N extends JobName<C>>(
  contract: C,
  name: N,
  job: Job,
): JobPayload<C, N> {
  if (job.name !== name) unrecoverable(new Error(`unknown job name ${job.name}`));
  try {
    return parseJobData(contract, name, job.data);
  } catch (err) {
    unrecoverable(err);
  }
}
