// Graceful shutdown as a module of its own: closers registered by what owns a lifetime
// (servers, workers, pools), run in reverse order of registration under one deadline.
// First SIGTERM/SIGINT: graceful; a second signal: forced exit.
import type { Logger } from "./logger.js";

type Closer = { name: string; close: () => Promise<unknown> };

export interface ShutdownRegistry {
  register(name: string, close: () => Promise<unknown>): void;
  /** Runs every closer; resolves true when all finished before the deadline. */
  shutdown(reason: string): Promise<boolean>;
}

export function createShutdownRegistry(logger: Logger, deadlineMs: number): ShutdownRegistry {
  const closers: Closer[] = [];
  let running: Promise<boolean> | undefined;
  return {
    register(name, close) {
      closers.push({ name, close });
    },
    shutdown(reason) {
      running ??= (async () => {
        logger.info({ reason, deadlineMs }, "shutting down");
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), deadlineMs);
          timer.unref();
        });
        // Order matters: stop intake first (servers, workers), then the pools they used.
        const work = (async () => {
          for (const closer of [...closers].reverse()) {
            const started = Date.now();
            try {
              await Promise.race([closer.close(), deadline]);
              logger.debug({ closer: closer.name, ms: Date.now() - started }, "closed");
            } catch (err) {
              logger.warn({ err, closer: closer.name }, "close failed");
            }
          }
          return "done" as const;
        })();
        const outcome = await Promise.race([work, deadline]);
        clearTimeout(timer);
        if (outcome === "timeout") logger.warn({ deadlineMs }, "shutdown deadline passed; exiting anyway");
        return outcome === "done";
      })();
      return running;
    },
  };
}

/** Wires SIGTERM and SIGINT: the first runs the registry then exits, a second forces exit. */
export function exitOnSignals(registry: ShutdownRegistry, logger: Logger): void {
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt !== undefined) {
      // npm and tsx can each forward one terminal Ctrl-C: a repeat this close is the same press.
      if (Date.now() - firstSignalAt < 1_000) return;
      logger.warn({ signal }, "second signal: forcing exit");
      process.exit(130);
    }
    firstSignalAt = Date.now();
    void registry.shutdown(signal).then((clean) => {
      logger.flush?.();
      process.exit(clean ? 0 : 1);
    });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
