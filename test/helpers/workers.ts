// Tracks the BullMQ workers a test file starts, so a leaked one fails the run.
import type { Worker } from "bullmq";

const open = new Set<Worker>();

export function trackWorker<W extends Worker>(worker: W): W {
  open.add(worker);
  worker.on("closed", () => open.delete(worker));
  return worker;
}

export const openWorkers = (): number => [...open].filter((w) => !w.closing).length;
