// The consumer half of the raw BullMQ ceiling (bench/alerts.bench.ts forks it, so producer and
// consumer run in separate processes, as the API and the worker do). A plain BullMQ Worker with a
// no-op processor and the production worker's options; it counts completions and reports over IPC.
//
// parent → child: { type: "start", redisUrl, prefix, queue, concurrency }  then  { type: "expect", jobs }
// child → parent: { type: "ready", at } and, per expect, { type: "done", at }
import { Worker } from "bullmq";
import { Redis } from "ioredis";

type Message =
  | { type: "start"; redisUrl: string; prefix: string; queue: string; concurrency: number }
  | { type: "expect"; jobs: number };

const now = () => performance.timeOrigin + performance.now();
const send = (message: object) => process.send?.(message);

let worker: Worker | undefined;
let connection: Redis | undefined;
let completed = 0;
let expected = Number.POSITIVE_INFINITY;

process.on("message", (message: Message) => {
  if (message.type === "start") {
    connection = new Redis(message.redisUrl, { maxRetriesPerRequest: null, enableAutoPipelining: false });
    worker = new Worker(message.queue, async () => undefined, {
      connection,
      prefix: message.prefix,
      concurrency: message.concurrency,
      stalledInterval: 15_000,
      lockDuration: 15_000,
      maxStalledCount: 2,
    });
    worker.on("completed", () => {
      completed++;
      if (completed === expected) send({ type: "done", at: now() });
    });
    worker.on("error", (err) => process.stderr.write(`noop worker: ${err.message}\n`));
    send({ type: "ready", at: now() });
  } else if (message.type === "expect") {
    completed = 0;
    expected = message.jobs;
  }
});

const stop = async () => {
  await worker?.close(true).catch(() => {});
  connection?.disconnect();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
process.once("disconnect", stop);
