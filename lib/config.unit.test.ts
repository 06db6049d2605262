import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  allInOneConfigSchema,
  apiConfigSchema,
  withConcurrency,
  workerConfigSchema,
} from "../domains/config.js";
import { secretsConfigIssues } from "../domains/secrets/config.js";
import { QUEUE_NAMES } from "../queues/names.js";
import { ConfigError, parseConfig } from "./config.js";

const base = { DATABASE_URL: "postgres://u@h:5432/d", REDIS_URL: "redis://127.0.0.1:6379" };

describe("config", () => {
  it("applies documented defaults", () => {
    const c = parseConfig(apiConfigSchema, base);
    expect(c).toMatchObject({
      PORT: 3000,
      QUEUE_PREFIX: "conveyor",
      LOG_LEVEL: "info",
      BODY_LIMIT_BYTES: 1_048_576,
    });
    const w = withConcurrency(parseConfig(workerConfigSchema, base));
    // "all" by default: every queue there is.
    expect(w.WORKER_QUEUES).toEqual([...QUEUE_NAMES]);
    expect(w.concurrency["alert-ingestion"]).toBe(256);
  });

  it("gives every process the same SHUTDOWN_TIMEOUT_MS (default 15 s, at least 100 ms)", () => {
    for (const schema of [apiConfigSchema, workerConfigSchema, allInOneConfigSchema]) {
      expect(parseConfig(schema, base).SHUTDOWN_TIMEOUT_MS).toBe(15_000);
      expect(parseConfig(schema, { ...base, SHUTDOWN_TIMEOUT_MS: "2500" }).SHUTDOWN_TIMEOUT_MS).toBe(2_500);
      expect(() => parseConfig(schema, { ...base, SHUTDOWN_TIMEOUT_MS: "99" })).toThrow(
        /SHUTDOWN_TIMEOUT_MS/,
      );
    }
    // Every entry point takes its deadline from the config, none from a literal.
    for (const entry of ["api/server.ts", "dashboards/server.ts", "dev/start.ts", "workers/main.ts"]) {
      const source = readFileSync(new URL(`../${entry}`, import.meta.url), "utf8");
      expect(source, entry).toMatch(/createShutdownRegistry\(logger, \w+\.SHUTDOWN_TIMEOUT_MS\)/);
    }
  });

  it("reads a concurrency per queue and a queue list", () => {
    const w = withConcurrency(
      parseConfig(workerConfigSchema, {
        ...base,
        WORKER_QUEUES: "alert-ingestion",
        WORKER_CONCURRENCY_ALERT_INGESTION: "12",
      }),
    );
    expect(w.WORKER_QUEUES).toEqual(["alert-ingestion"]);
    expect(w.concurrency["alert-ingestion"]).toBe(12);
  });

  it("treats an empty variable as unset", () => {
    const c = parseConfig(apiConfigSchema, { ...base, ADMIN_USER: "", ALERTS_INGEST_TOKEN: "", PORT: "" });
    expect(c.ADMIN_USER).toBeUndefined();
    expect(c.ALERTS_INGEST_TOKEN).toBeUndefined();
    expect(c.PORT).toBe(3000);
  });

  it("accepts a Redis Cluster hash tag in the queue prefix", () => {
    expect(parseConfig(apiConfigSchema, { ...base, QUEUE_PREFIX: "{conveyor}" }).QUEUE_PREFIX).toBe(
      "{conveyor}",
    );
  });

  it("names every bad or missing variable", () => {
    const attempt = () =>
      parseConfig(workerConfigSchema, {
        REDIS_URL: "http://nope",
        PORT: "x",
        WORKER_QUEUES: "alert-ingestion,mail",
      });
    expect(attempt).toThrow(ConfigError);
    try {
      attempt();
    } catch (err) {
      const message = (err as Error).message;
      expect(message).toContain("DATABASE_URL");
      expect(message).toContain("REDIS_URL");
      expect(message).toContain("unknown queue(s) mail");
    }
  });

  it("checks secrets settings: the seal key's form, and what a process serving secrets must set", () => {
    const key = Buffer.alloc(32, 7).toString("base64");
    const c = parseConfig(apiConfigSchema, { ...base, JOB_SEAL_KEY: key });
    expect(c).toMatchObject({
      SECRETS_MAX_VALUE_BYTES: 1_048_576,
      SECRETS_MAX_MATCHES: 1_000,
      SECRETS_KEY_CACHE_TTL_SECONDS: 60,
    });
    for (const bad of ["short", Buffer.alloc(31).toString("base64"), `${key}!`])
      expect(() => parseConfig(apiConfigSchema, { ...base, JOB_SEAL_KEY: bad })).toThrow(/JOB_SEAL_KEY/);
    expect(secretsConfigIssues(c)).toEqual([]);
    expect(secretsConfigIssues(parseConfig(apiConfigSchema, base)).join()).toMatch(/JOB_SEAL_KEY/);
    const production = parseConfig(apiConfigSchema, { ...base, NODE_ENV: "production", JOB_SEAL_KEY: key });
    expect(secretsConfigIssues(production).join()).toMatch(/SECRETS_KDF_SALT/);
  });

  it("reads JOB_SEAL_KEYS_ACCEPTED as a comma-separated list of seal keys", () => {
    const [a, b] = [Buffer.alloc(32, 1).toString("base64"), Buffer.alloc(32, 2).toString("base64")];
    const parse = (accepted: string) =>
      parseConfig(apiConfigSchema, { ...base, JOB_SEAL_KEYS_ACCEPTED: accepted });
    expect(parse(`${a}, ${b},`).JOB_SEAL_KEYS_ACCEPTED).toEqual([a, b]);
    expect(parseConfig(apiConfigSchema, base).JOB_SEAL_KEYS_ACCEPTED).toBeUndefined();
    expect(() => parse(`${a},short`)).toThrow(/JOB_SEAL_KEYS_ACCEPTED/);
  });
});
