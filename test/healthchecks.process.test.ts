// The api and worker health checks of docker-compose.yml, run as Docker runs them (`node -e …`
// in a process of its own) against a real API and real workers; the file's shape is checked in
// docker-compose.unit.test.ts.
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTestEnv, rawEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { type RunningWorkers, startWorkers } from "../workers/runtime.js";
import { argv, ROOT, service } from "./helpers/compose.js";
import { createTestContext, eventually, type TestContext, uniquePrefix } from "./helpers/context.js";
import { serveApp } from "./helpers/http.js";
import { deletePrefix } from "./helpers/prefixes.js";
import { trackWorker } from "./helpers/workers.js";

/** Runs a service's health check as Docker would (exec form), from the repo root as /app. */
function runHealthcheck(name: string, env: Record<string, string>): Promise<number> {
  const [kind, command, ...args] = argv(service(name).healthcheck?.test);
  if (kind !== "CMD" || command !== "node") throw new Error(`${name}: expected a CMD node health check`);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { PATH: rawEnv("PATH") ?? "", ...env }, timeout: 10_000 },
      (err) => resolve(err ? (typeof err.code === "number" ? err.code : 1) : 0),
    );
  });
}

const listening = (server: Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
  );
const closed = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe("the api health check", () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestContext();
  });
  afterAll(() => t.close());

  it("passes against a ready API and fails when it answers 503 or nothing listens", async () => {
    const served = await serveApp(t.app);
    const { port } = served;
    try {
      expect(await runHealthcheck("api", { PORT: String(port) })).toBe(0);
    } finally {
      await served.close();
    }
    expect(await runHealthcheck("api", { PORT: String(port) })).not.toBe(0);

    const unavailable = createServer((_req, res) => res.writeHead(503).end());
    const port503 = await listening(unavailable);
    try {
      expect(await runHealthcheck("api", { PORT: String(port503) })).not.toBe(0);
    } finally {
      await closed(unavailable);
    }
  });
});

describe("the worker health check", () => {
  it("passes only while a worker of this prefix is connected from this address", async () => {
    const prefix = uniquePrefix();
    const env = { REDIS_URL: loadTestEnv().TEST_REDIS_URL, QUEUE_PREFIX: prefix };
    expect(await runHealthcheck("worker", env)).not.toBe(0);

    let workers: RunningWorkers | undefined = startWorkers({
      config: { REDIS_URL: env.REDIS_URL, QUEUE_PREFIX: prefix },
      logger: createLogger({ level: "silent" }),
      queues: [{ queue: "healthcheck", concurrency: 1, processor: { handle: async () => null } }],
    });
    for (const w of workers.workers) trackWorker(w);
    try {
      await eventually(
        async () => ((await runHealthcheck("worker", env)) === 0 ? true : undefined),
        15_000,
        200,
      );
      await workers.close();
      workers = undefined;
      await eventually(
        async () => ((await runHealthcheck("worker", env)) !== 0 ? true : undefined),
        15_000,
        200,
      );
    } finally {
      await workers?.close();
      // The worker registered its queue under the prefix (meta, stalled-check): not ours to keep.
      await deletePrefix(prefix);
    }
  });

  it("fails when Redis does not answer", async () => {
    const nothing = createServer();
    const port = await listening(nothing);
    await closed(nothing);
    expect(
      await runHealthcheck("worker", { REDIS_URL: `redis://127.0.0.1:${port}`, QUEUE_PREFIX: "x" }),
    ).not.toBe(0);
  });
});
