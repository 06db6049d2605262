// A bound on how many of one kind of task run at once in a process, with a bounded wait line:
// beyond both, a task is refused at once (503 with Retry-After) instead of piling up.
import { AppError } from "./errors.js";

export interface ConcurrencyGate {
  /** Runs `task` when a slot is free; SERVICE_UNAVAILABLE when `max` run and `queueMax` wait. */
  run<T>(task: () => Promise<T>): Promise<T>;
  readonly running: number;
  readonly waiting: number;
}

export function createConcurrencyGate(opts: {
  max: number;
  queueMax: number;
  /** What runs here, for the refusal's message: "key derivations". */
  what: string;
  /** Retry-After of a refusal, in seconds. */
  retryAfterSeconds: number;
}): ConcurrencyGate {
  let running = 0;
  const waiting: (() => void)[] = [];

  const release = () => {
    const next = waiting.shift();
    // The slot passes straight to the next in line, so `running` never dips below the bound.
    if (next) next();
    else running--;
  };

  const acquire = (): Promise<void> | undefined => {
    if (running < opts.max) {
      running++;
      return undefined;
    }
    if (waiting.length >= opts.queueMax)
      throw new AppError(
        "SERVICE_UNAVAILABLE",
        `too many ${opts.what} in progress on this server; retry later`,
        undefined,
        opts.retryAfterSeconds,
      );
    return new Promise<void>((resolve) => waiting.push(resolve));
  };

  return {
    async run(task) {
      await acquire();
      try {
        return await task();
      } finally {
        release();
      }
    },
    get running() {
      return running;
    },
    get waiting() {
      return waiting.length;
    },
  };
}
