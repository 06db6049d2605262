// Runs in every test file, after the file's own hooks: a test that leaves a BullMQ worker
// running fails the run, because a leaked worker keeps taking jobs from whatever test comes
// next; so does one that leaves keys under its queue prefix in the shared Redis.
import { afterAll } from "vitest";
import { keysLeftBehind } from "./helpers/prefixes.js";
import { openWorkers } from "./helpers/workers.js";

afterAll(async () => {
  const leaked = openWorkers();
  if (leaked > 0) throw new Error(`${leaked} BullMQ worker(s) still running at the end of this file`);
  const left = await keysLeftBehind();
  if (left.length > 0)
    throw new Error(
      `${left.length} Redis key(s) left under this file's queue prefixes: ${left.slice(0, 5).join(", ")}`,
    );
});
