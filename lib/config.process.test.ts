// A bad configuration stops a real process before it does anything, with status 78 (EX_CONFIG)
// and a message naming the variable: what an operator sees when a deployment is misconfigured.
import { afterEach, describe, expect, it } from "vitest";
import { killAll, startProcess } from "../test/helpers/processes.js";

const base = { DATABASE_URL: "postgres://u@h:5432/d", REDIS_URL: "redis://127.0.0.1:6379" };

afterEach(() => killAll());

describe("config at process start", () => {
  it("makes a process exit with a message naming the variable", async () => {
    const worker = startProcess("worker", "workers/main.ts", { ...base, REDIS_URL: "not a url" });
    expect(await worker.waitForExit()).toEqual({ code: 78, signal: null });
    expect(worker.stderr()).toMatch(/REDIS_URL/);
  });

  it("makes an API process without its server keys exit with a message naming each", async () => {
    const api = startProcess("api", "api/server.ts", { ...base, MIGRATE_ON_START: "false" });
    expect(await api.waitForExit()).toEqual({ code: 78, signal: null });
    for (const name of ["JOB_SEAL_KEY", "API_KEY_HASH_KEY", "ACCOUNT_DATA_KEY", "JWT_SIGNING_KEY"])
      expect(api.stderr()).toMatch(new RegExp(name));
  });

  it("makes a worker serving notifications without ACCOUNT_DATA_KEY exit: it could sign no webhook", async () => {
    const worker = startProcess("worker", "workers/main.ts", {
      ...base,
      MIGRATE_ON_START: "false",
      WORKER_QUEUES: "notifications",
    });
    expect(await worker.waitForExit()).toEqual({ code: 78, signal: null });
    expect(worker.stderr()).toMatch(/ACCOUNT_DATA_KEY: required by a worker serving `notifications`/);
  });
});
