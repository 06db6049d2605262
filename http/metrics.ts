// Prometheus figures: HTTP requests by route and status, latency, queue depths by state and
// Redis's memory use (read from Redis at scrape time). One registry per app, so tests can build
// several apps.
import type { Redis } from "ioredis";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { redisMemory } from "../lib/redis.js";
import { withTimeout } from "../lib/timeout.js";
import type { QueueRegistry } from "../queues/registry.js";

export interface Metrics {
  registry: Registry;
  observe(method: string, route: string, status: number, seconds: number): void;
}

const JOB_STATES = ["waiting", "active", "delayed", "completed", "failed", "paused", "prioritized"] as const;

/**
 * The metrics of a process serving HTTP. `usageSpooledHits`: the hits this process holds in its
 * usage spool, acknowledged while Redis could not take them and not yet replayed.
 */
export function createMetrics(queues: QueueRegistry, redis: Redis, usageSpooledHits?: () => number): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by method, route and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request latency by method and route",
    labelNames: ["method", "route"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "queue_jobs",
    help: "Jobs per queue and state",
    labelNames: ["queue", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      // Without Redis the queue depths are unknown: leave them out, serve the rest.
      await Promise.allSettled(
        queues.names.map(async (name) => {
          const counts = await withTimeout(queues.get(name).getJobCounts(...JOB_STATES), 2_000);
          for (const state of JOB_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
        }),
      );
    },
  });
  if (usageSpooledHits)
    new Gauge({
      name: "conveyor_usage_spooled_hits",
      help: "Hits this API process acknowledged into its spool while Redis was down, not yet replayed",
      registers: [registry],
      collect() {
        this.set(usageSpooledHits());
      },
    });
  new Gauge({
    name: "conveyor_redis_memory_used_ratio",
    help: "Redis used_memory / maxmemory (absent without maxmemory); at 1 Redis refuses every write",
    registers: [registry],
    async collect() {
      this.reset();
      const memory = await withTimeout(redisMemory(redis), 2_000).catch(() => undefined);
      if (memory && memory.maxBytes > 0) this.set(memory.usedBytes / memory.maxBytes);
    },
  });
  return {
    registry,
    observe(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route }, seconds);
    },
  };
}
