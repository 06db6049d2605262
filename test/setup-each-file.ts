// Runs in every test file: a test that leaves a BullMQ worker running fails the run,
// because a leaked worker keeps taking jobs from whatever test comes next.
import { afterAll } from "vitest";
import { openWorkers } from "./helpers/workers.js";

afterAll(() => {
  const leaked = openWorkers();
  if (leaked > 0) throw new Error(`${leaked} BullMQ worker(s) still running at the end of this file`);
});
