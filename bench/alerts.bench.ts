import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import postgres from "postgres";
import { inheritedEnv, loadTestEnv, rawEnv } from "../lib/config.js";
import { randomId } from "../lib/ids.js";
import { type AlertEvent, alertIngestionQueue } from "../queues/alert-ingestion.js";
import {
  CLOCK_TICKS,
  cleanups,
  createDatabase,
  fmt,
  freePort,
  identityEnv,
  intArg,
  machineTicks,
  note,
  out,
  percentile,
  processTicks,
  RawConnection,
  redisDeletingKeysAtCleanup,
  redisServerPid,
  removeLogsAtCleanup,
  cleanup as runCleanups,
  sleep,
  startChild,
  startNoopWorker,
  unlessExits,
  waitFor,
  waitUntilReady,
} from "./support.js";

const QUEUE = alertIngestionQueue.name;
const TARGET = { eventsPerSecond: 5_000, p99Ms: 20 };

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    connections: { type: "string", default: "64" },
    rate: { type: "string", default: "0" },
    client: { type: "string", default: "raw" },
    warmup: { type: "string", default: "2" },
    window: { type: "string", default: "1000" },
    seed: { type: "string" },
    "log-level": { type: "string", default: "info" },
    "worker-concurrency": { type: "string" },
    "batch-max": { type: "string" },
    "pool-max": { type: "string" },
    "ceiling-jobs": { type: "string", default: "25000" },
    "ceiling-concurrency": { type: "string" },
    "no-ceiling": { type: "boolean", default: false },
    "keep-logs": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    help: { type: "boolean", default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`npm run bench:alerts -- [options]
  --seconds N              measured load time (default 10)
  --connections N          concurrent keep-alive HTTP connections (default 64)
  --rate N                 open loop: N events/s offered over the connections, latency counted from
                           when each event was due (default 0: closed loop, each connection posts
                           its next event as soon as the last one is answered)
  --client raw|node        HTTP client: a minimal keep-alive HTTP/1.1 client (default) or node:http
  --warmup N               seconds of warm-up load before measuring, drained first (default 2; 0 = none)
  --window N               alerts open at once in the event generator (default 1000)
  --seed N                 seed of the event generator (default random, printed)
  --log-level L            LOG_LEVEL of the API and worker (default info; logs go to files)
  --worker-concurrency N   WORKER_CONCURRENCY_ALERT_INGESTION for the worker (default: the worker's own)
  --batch-max N            ALERTS_BATCH_MAX for the worker (default: the worker's own)
  --pool-max N             DB_POOL_MAX for API and worker (default: their own)
  --ceiling-jobs N         jobs per phase of the raw BullMQ ceiling (default 25000)
  --ceiling-concurrency N  concurrent Queue.add loops of the ceiling (default: --connections)
  --no-ceiling             skip the raw BullMQ ceiling
  --keep-logs              keep the API and worker logs (printed path)
  --cpu-prof DIR           run API and worker with --cpu-prof, profiles in DIR/api and DIR/worker
Servers: TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres),
         TEST_REDIS_URL (default redis://127.0.0.1:6379).
`);
  process.exit(0);
}

const opts = {
  seconds: intArg("seconds", args.seconds, 1),
  connections: intArg("connections", args.connections, 1),
  rate: intArg("rate", args.rate, 0),
  client: args.client === "node" ? ("node" as const) : ("raw" as const),
  warmup: intArg("warmup", args.warmup, 0),
  window: intArg("window", args.window, 1),
  seed: args.seed === undefined ? randomBytes(4).readUInt32LE() : intArg("seed", args.seed, 0),
  logLevel: args["log-level"] ?? "info",
  workerConcurrency:
    args["worker-concurrency"] === undefined
      ? undefined
      : intArg("worker-concurrency", args["worker-concurrency"], 1),
  batchMax: args["batch-max"] === undefined ? undefined : intArg("batch-max", args["batch-max"], 1),
  poolMax: args["pool-max"] === undefined ? undefined : intArg("pool-max", args["pool-max"], 1),
  ceilingJobs: intArg("ceiling-jobs", args["ceiling-jobs"], 1),
  ceilingConcurrency: 0,
  ceiling: !args["no-ceiling"],
  keepLogs: args["keep-logs"] ?? false,
  cpuProf: args["cpu-prof"] === undefined ? undefined : path.resolve(args["cpu-prof"]),
};
if (args.client !== "raw" && args.client !== "node") {
  process.stderr.write(`--client must be raw or node (got ${args.client})\n`);
  process.exit(2);
}
opts.ceilingConcurrency =
  args["ceiling-concurrency"] === undefined
    ? opts.connections
    : intArg("ceiling-concurrency", args["ceiling-concurrency"], 1);

// ---------------------------------------------------------------- small helpers

const wallNow = () => performance.timeOrigin + performance.now();

/** mulberry32: a small seeded generator, so a run's event stream can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- the event generator

const STATUS_LEVEL = { TRIGGERED: 0, ACKNOWLEDGED: 1, RESOLVED: 2 } as const;
const LEVEL_STATUS = ["TRIGGERED", "ACKNOWLEDGED", "RESOLVED"] as const;

interface Outgoing {
  body: Buffer;
  /** The whole HTTP/1.1 request, for the raw client. */
  request: Buffer;
  alert: number;
  /** The status this event implies: max(reported, resolvedOn ⇒ 2, acknowledgedOn ⇒ 1). */
  level: number;
  ack: boolean;
  res: boolean;
}

interface PlannedAlert {
  id: string;
  triggeredOn: number;
  acknowledgedOn: number | undefined;
  resolvedOn: number | undefined;
  pending: Outgoing[];
}

/**
 * An endless, realistic stream of events for a rolling pool of `window` open alerts: each alert is
 * created (ALERT_CREATED), then maybe acknowledged and/or resolved (ALERT_CHANGED, whole alert).
 * Names, services and responders repeat across alerts; events of open alerts interleave at random.
 * As real emitters do: ~10% of acknowledgements arrive after the resolution, ~3% of ALERT_CREATED
 * are never sent and ~3% arrive last, ~5% of resolutions still say TRIGGERED/ACKNOWLEDGED, and
 * ~5% of events are delivered twice.
 */
class EventStream {
  readonly alerts: PlannedAlert[] = [];
  private readonly open: PlannedAlert[] = [];
  private readonly random: () => number;
  private readonly services: { serviceId: string; name: string }[];
  private readonly responders: { userId: string; name: string }[];
  private readonly names: string[];
  private readonly baseTime = Date.now() - 24 * 3600_000;

  constructor(
    seed: number,
    private readonly window: number,
  ) {
    this.random = rng(seed);
    const svc = [
      "Events API",
      "Billing",
      "Checkout",
      "Search",
      "Auth",
      "Payments",
      "Inventory",
      "Mobile BFF",
    ];
    this.services = [...svc, "Notifications", "Reports", "Ledger", "CDN"].map((name) => ({
      serviceId: randomUUID(),
      name,
    }));
    const first = ["Daisy", "Omar", "Lena", "Yuki", "Marco", "Ada", "Kofi", "Ines", "Raj", "Zoe"];
    const last = ["Wilson", "Haddad", "Novak", "Tanaka", "Rossi", "Okafor"];
    this.responders = Array.from({ length: 24 }, (_, i) => ({
      userId: randomUUID(),
      name: `${first[i % first.length]} ${last[Math.floor(i / first.length) % last.length]}`,
    }));
    const what = ["High CPU", "Disk almost full", "5xx rate above SLO", "Latency p99 high", "Pod crash loop"];
    const where = ["db-1", "db-2", "api-eu", "api-us", "worker-3", "cache", "edge"];
    this.names = what.flatMap((w) => where.map((h) => `${w} on ${h}`));
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T;
  }

  private plan(): PlannedAlert {
    const r = this.random;
    const index = this.alerts.length;
    const id = randomUUID();
    const triggeredOn = this.baseTime + Math.floor(r() * 3600_000) + index;
    const shape = r(); // 15% stay open, 25% acked only, 45% acked then resolved, 15% resolved without ack
    const acked = shape >= 0.15 && shape < 0.85;
    const resolved = shape >= 0.4;
    const acknowledgedOn = acked ? triggeredOn + 5_000 + Math.floor(r() * 1_800_000) : undefined;
    const resolvedOn = resolved
      ? (acknowledgedOn ?? triggeredOn) + 10_000 + Math.floor(r() * 7_200_000)
      : undefined;
    const name = this.pick(this.names);
    const service = this.pick(this.services);
    const responder = this.pick(this.responders);
    const iso = (ms: number) => new Date(ms).toISOString();
    const base = { alertId: id, name, service, triggeredOn: iso(triggeredOn) };
    const make = (event: AlertEvent): Outgoing => {
      const a = event.alert;
      const implied = a.resolvedOn ? 2 : a.acknowledgedOn ? 1 : 0;
      const json = JSON.stringify(event);
      const length = Buffer.byteLength(json);
      const head =
        "POST /v1/alerts/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
        `Content-Length: ${length}\r\n\r\n`;
      const request = Buffer.from(head + json);
      return {
        body: request.subarray(request.length - length),
        request,
        alert: index,
        level: Math.max(STATUS_LEVEL[a.status], implied),
        ack: a.acknowledgedOn !== undefined,
        res: a.resolvedOn !== undefined,
      };
    };
    const created = make({
      type: "ALERT_CREATED",
      // A third of alerts get their responder only when someone picks them up.
      alert: { ...base, status: "TRIGGERED", ...(r() < 0.67 ? { responder } : {}) },
    });
    const changes: Outgoing[] = [];
    if (acknowledgedOn !== undefined)
      changes.push(
        make({
          type: "ALERT_CHANGED",
          alert: { ...base, responder, status: "ACKNOWLEDGED", acknowledgedOn: iso(acknowledgedOn) },
        }),
      );
    if (resolvedOn !== undefined) {
      const q = r();
      const status = q < 0.03 ? "TRIGGERED" : q < 0.05 ? "ACKNOWLEDGED" : "RESOLVED";
      changes.push(
        make({
          type: "ALERT_CHANGED",
          alert: {
            ...base,
            responder,
            status,
            ...(acknowledgedOn !== undefined ? { acknowledgedOn: iso(acknowledgedOn) } : {}),
            resolvedOn: iso(resolvedOn),
          },
        }),
      );
    }
    if (changes.length === 2 && r() < 0.1) changes.reverse(); // the ack arrives after the resolution
    const order = r();
    const pending =
      order < 0.03 && changes.length > 0
        ? changes // ALERT_CREATED missed: the first ALERT_CHANGED inserts the alert
        : order < 0.06
          ? [...changes, created] // ALERT_CREATED arrives last
          : [created, ...changes];
    // At-least-once emitters: ~5% of events come twice, the copy somewhere later.
    for (const event of [...pending]) {
      if (r() >= 0.05) continue;
      const after = pending.indexOf(event) + 1;
      pending.splice(after + Math.floor(r() * (pending.length - after + 1)), 0, event);
    }
    const planned = { id, triggeredOn, acknowledgedOn, resolvedOn, pending };
    this.alerts.push(planned);
    return planned;
  }

  private ready: Outgoing[] = [];
  private readyAt = 0;

  /** Generates `count` events ahead, so that the measured window does not pay for making them. */
  prefill(count: number): void {
    this.ready = this.ready.slice(this.readyAt);
    this.readyAt = 0;
    for (let i = 0; i < count; i++) this.ready.push(this.make());
  }

  next(): Outgoing {
    if (this.readyAt < this.ready.length) return this.ready[this.readyAt++] as Outgoing;
    return this.make();
  }

  private make(): Outgoing {
    let alert: PlannedAlert;
    let slot = -1;
    if (this.open.length < this.window) {
      alert = this.plan();
    } else {
      slot = Math.floor(this.random() * this.open.length);
      alert = this.open[slot] as PlannedAlert;
    }
    const event = alert.pending.shift() as Outgoing;
    if (slot === -1 && alert.pending.length > 0) this.open.push(alert);
    if (slot !== -1 && alert.pending.length === 0) {
      // swap-remove
      const last = this.open.pop() as PlannedAlert;
      if (slot < this.open.length) this.open[slot] = last;
    }
    return event;
  }
}

// ---------------------------------------------------------------- what was acknowledged

/** Every acknowledged event (for the lost count) and, per alert, the state they imply together. */
class Ledger {
  readonly eventAlert: number[] = [];
  readonly eventLevel: number[] = [];
  readonly eventFlags: number[] = []; // 1: carries acknowledgedOn, 2: carries resolvedOn
  readonly level = new Map<number, number>();
  readonly flags = new Map<number, number>();

  record(e: Outgoing): void {
    const flags = (e.ack ? 1 : 0) | (e.res ? 2 : 0);
    this.eventAlert.push(e.alert);
    this.eventLevel.push(e.level);
    this.eventFlags.push(flags);
    this.level.set(e.alert, Math.max(this.level.get(e.alert) ?? 0, e.level));
    this.flags.set(e.alert, (this.flags.get(e.alert) ?? 0) | flags);
  }

  get events(): number {
    return this.eventAlert.length;
  }
}

// ---------------------------------------------------------------- the load generator

type Sender = (event: Outgoing) => Promise<number | string>;

/** A sender per connection: the raw client, or node:http over a keep-alive agent. */
function makeSenders(
  kind: "raw" | "node",
  port: number,
  connections: number,
): { senders: Sender[]; close(): void } {
  if (kind === "raw") {
    const conns = Array.from({ length: connections }, () => new RawConnection(port));
    return {
      senders: conns.map(
        (c) => (event: Outgoing) => c.send(event.request).then((s) => (s === 0 ? "ECONN" : s)),
      ),
      close: () => {
        for (const c of conns) c.close();
      },
    };
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const send: Sender = (event) =>
    new Promise((resolve) => {
      const req = http.request(
        {
          agent,
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/v1/alerts/events",
          headers: { "content-type": "application/json", "content-length": event.body.length },
        },
        (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      req.end(event.body);
    });
  return { senders: Array.from({ length: connections }, () => send), close: () => agent.destroy() };
}

interface LoadResult {
  firstPostAt: number;
  lastAckAt: number;
  sent: number;
  accepted: number;
  rejected: Map<number | string, number>;
  latencies: Float64Array;
}

/**
 * Closed loop (rate 0): every connection posts the next event as soon as its last one is
 * answered. Open loop (rate > 0): events are due at a fixed rate and go out on the next idle
 * connection; latency counts from when an event was due, so a stalled server is not flattered
 * (no coordinated omission).
 */
async function runLoad(opts: {
  senders: Sender[];
  seconds: number;
  rate: number;
  stream: EventStream;
  ledger: Ledger;
}): Promise<LoadResult> {
  const latencies: number[] = [];
  const rejected = new Map<number | string, number>();
  let sent = 0;
  let accepted = 0;
  const post = async (send: Sender, event: Outgoing, dueAt: number) => {
    sent++;
    const status = await send(event);
    latencies.push(performance.now() - dueAt);
    if (status === 202) {
      accepted++;
      opts.ledger.record(event);
    } else rejected.set(status, (rejected.get(status) ?? 0) + 1);
  };

  const firstPostAt = performance.now();
  const deadline = firstPostAt + opts.seconds * 1000;
  if (opts.rate <= 0) {
    const loop = async (send: Sender) => {
      while (!stopping && performance.now() < deadline)
        await post(send, opts.stream.next(), performance.now());
    };
    await Promise.all(opts.senders.map(loop));
  } else {
    const idle = [...opts.senders];
    const due: number[] = [];
    let issued = 0;
    const inFlight = new Set<Promise<void>>();
    const pump = () => {
      while (idle.length > 0 && due.length > 0) {
        const send = idle.pop() as Sender;
        const task: Promise<void> = post(send, opts.stream.next(), due.shift() as number).then(() => {
          inFlight.delete(task);
          idle.push(send);
          pump();
        });
        inFlight.add(task);
      }
    };
    const total = Math.round(opts.rate * opts.seconds);
    while (!stopping && issued < total) {
      const now = performance.now();
      const target = Math.min(total, Math.floor(((now - firstPostAt) / 1000) * opts.rate) + 1);
      for (; issued < target; issued++) due.push(firstPostAt + (issued / opts.rate) * 1000);
      pump();
      await sleep(1);
    }
    while (!stopping && (due.length > 0 || inFlight.size > 0)) await sleep(1);
  }
  return {
    firstPostAt,
    lastAckAt: performance.now(),
    sent,
    accepted,
    rejected,
    latencies: Float64Array.from(latencies).sort(),
  };
}

// ---------------------------------------------------------------- CPU accounting (Linux /proc)

function postgresTicks(): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "postgres") continue;
    } catch {
      continue;
    }
    const ticks = processTicks(Number(entry));
    if (!Number.isNaN(ticks)) total += ticks;
  }
  return total;
}

type CpuSample = { at: number; procs: Record<string, number>; machine: { busy: number; total: number } };

function sampleCpu(pids: Record<string, number | undefined>, withPostgres = true): CpuSample {
  const procs: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids))
    procs[name] = pid === undefined ? Number.NaN : processTicks(pid);
  if (withPostgres) procs.postgres = postgresTicks();
  const self = process.cpuUsage();
  procs.bench = ((self.user + self.system) / 1e6) * CLOCK_TICKS;
  return { at: performance.now(), procs, machine: machineTicks() };
}

const machineBusy = (a: CpuSample, b: CpuSample) =>
  ((b.machine.busy - a.machine.busy) / (b.machine.total - a.machine.total)) * 100;

/** Per process: % of one core between two samples and, given `events`, CPU µs per event. */
function cpuLines(a: CpuSample, b: CpuSample, events?: number, unit = "event"): string[] {
  const seconds = (b.at - a.at) / 1000;
  const share: string[] = [];
  const perEvent: string[] = [];
  let total = 0;
  for (const name of Object.keys(a.procs)) {
    const cpuSeconds = ((b.procs[name] ?? Number.NaN) - (a.procs[name] ?? Number.NaN)) / CLOCK_TICKS;
    if (Number.isNaN(cpuSeconds)) continue;
    total += cpuSeconds;
    share.push(`${name} ${fmt((cpuSeconds / seconds) * 100)}%`);
    if (events) perEvent.push(`${name} ${fmt((cpuSeconds / events) * 1e6)}`);
  }
  // What the rest of the machine used meanwhile: anything but a few % means disturbed figures.
  const machineCores = (b.machine.busy - a.machine.busy) / CLOCK_TICKS / seconds;
  const others = (machineCores - total / seconds) * 100;
  const lines = [
    `${share.join(", ")}, other processes ${fmt(Math.max(0, others))}% (% of one core; ` +
      `machine ${fmt(machineBusy(a, b))}% busy, ${os.cpus().length} cores)`,
  ];
  if (events) lines.push(`${perEvent.join(", ")}; total ${fmt((total / events) * 1e6)} µs CPU per ${unit}`);
  return lines;
}

// ---------------------------------------------------------------- cleanup

/** Set when cleaning up starts: the load stops. */
let stopping = false;

function cleanup(): Promise<void> {
  stopping = true;
  return runCleanups();
}

// One Ctrl-C can arrive several times (the terminal signals the whole process group, and tsx and
// npm relay it again), and under tsx a signal nobody listens to ends the process at once: keep
// listening, clean up once, and let only a signal sent 2 s or more later force the exit.
let signalledAt: number | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => {
    if (signalledAt === undefined) {
      signalledAt = Date.now();
      process.stderr.write(`\n${signal}: cleaning up… (again in 2 s to force)\n`);
      void cleanup().finally(() => process.exit(130));
    } else if (Date.now() - signalledAt > 2_000) process.exit(130);
  });

// ---------------------------------------------------------------- the end-to-end phase

const PENDING_STATES = ["waiting", "active", "delayed", "prioritized", "paused", "waiting-children"] as const;

async function pendingJobs(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts(...PENDING_STATES);
  return PENDING_STATES.reduce((sum, s) => sum + (counts[s] ?? 0), 0);
}

/** Loads the per-alert expectation into a temp table of `sql` (a one-connection client). */
async function loadExpectation(sql: postgres.Sql, stream: EventStream, ledger: Ledger): Promise<number> {
  const ids: string[] = [];
  const statuses: string[] = [];
  const triggered: string[] = [];
  const acked: (string | null)[] = [];
  const resolved: (string | null)[] = [];
  for (const [index, level] of ledger.level) {
    const a = stream.alerts[index] as PlannedAlert;
    const flags = ledger.flags.get(index) ?? 0;
    ids.push(a.id);
    statuses.push(LEVEL_STATUS[level] as string);
    triggered.push(new Date(a.triggeredOn).toISOString());
    acked.push(flags & 1 && a.acknowledgedOn !== undefined ? new Date(a.acknowledgedOn).toISOString() : null);
    resolved.push(flags & 2 && a.resolvedOn !== undefined ? new Date(a.resolvedOn).toISOString() : null);
  }
  await sql`drop table if exists bench_expected`;
  await sql`
    create temp table bench_expected as
    select * from unnest(${ids}::text[], ${statuses}::alert_status[], ${triggered}::timestamptz[],
                         ${acked}::timestamptz[], ${resolved}::timestamptz[])
      as t(alert_id, status, triggered_on, acknowledged_on, resolved_on)`;
  await sql`alter table bench_expected add primary key (alert_id)`;
  await sql`analyze bench_expected`;
  return ids.length;
}

/** Alerts whose acknowledged state is not (yet) in `alerts`. */
async function missingAlerts(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ missing: number }[]>`
    select count(*)::int as missing
    from bench_expected e left join alerts a on a.alert_id = e.alert_id
    where a.alert_id is null
       or a.status < e.status
       or a.triggered_on > e.triggered_on
       or (e.acknowledged_on is not null and (a.acknowledged_on is null or a.acknowledged_on > e.acknowledged_on))
       or (e.resolved_on is not null and (a.resolved_on is null or a.resolved_on > e.resolved_on))`;
  return row?.missing ?? -1;
}

/** Acknowledged events whose effect is missing from `alerts`, checked one by one. */
async function countLost(
  sql: postgres.Sql,
  stream: EventStream,
  ledger: Ledger,
): Promise<{ lost: number; rows: number; extraRows: number }> {
  const rows = await sql<
    {
      alert_id: string;
      status: keyof typeof STATUS_LEVEL;
      triggered_on: Date;
      acknowledged_on: Date | null;
      resolved_on: Date | null;
    }[]
  >`select alert_id, status, triggered_on, acknowledged_on, resolved_on from alerts`;
  const byId = new Map(rows.map((r) => [r.alert_id, r]));
  let lost = 0;
  for (let i = 0; i < ledger.events; i++) {
    const a = stream.alerts[ledger.eventAlert[i] as number] as PlannedAlert;
    const flags = ledger.eventFlags[i] as number;
    const row = byId.get(a.id);
    const ok =
      row !== undefined &&
      STATUS_LEVEL[row.status] >= (ledger.eventLevel[i] as number) &&
      row.triggered_on.getTime() <= a.triggeredOn &&
      (!(flags & 1) ||
        (row.acknowledged_on !== null && row.acknowledged_on.getTime() <= (a.acknowledgedOn ?? 0))) &&
      (!(flags & 2) || (row.resolved_on !== null && row.resolved_on.getTime() <= (a.resolvedOn ?? 0)));
    if (!ok) lost++;
  }
  const expected = new Set(
    [...ledger.level.keys()].map((index) => (stream.alerts[index] as PlannedAlert).id),
  );
  const extraRows = rows.filter((r) => !expected.has(r.alert_id)).length;
  return { lost, rows: rows.length, extraRows };
}

/**
 * Polls until every acknowledged event is visible: the queue's pending count (cheap, Redis) every
 * 5 ms, and the Postgres check whenever at most one round of jobs is left. Returns the moment the
 * Postgres check first passed, or undefined when it never did (queue drained + 5 s, or 120 s).
 */
async function waitUntilVisible(
  queue: Queue,
  sql: postgres.Sql,
  lastRound: number,
): Promise<{ visibleAt: number | undefined; pendingAtEnd: number }> {
  const giveUpAt = performance.now() + 120_000;
  let drainedAt: number | undefined;
  let pending = Number.POSITIVE_INFINITY;
  while (performance.now() < giveUpAt) {
    pending = await pendingJobs(queue);
    if (pending <= lastRound) {
      if ((await missingAlerts(sql)) === 0) return { visibleAt: performance.now(), pendingAtEnd: pending };
      if (pending === 0) {
        drainedAt ??= performance.now();
        if (performance.now() - drainedAt > 5_000) break;
      }
    }
    await sleep(5);
  }
  return { visibleAt: undefined, pendingAtEnd: pending };
}

// ---------------------------------------------------------------- the raw BullMQ ceiling

async function addAll(queue: Queue, payloads: AlertEvent[], concurrency: number): Promise<number> {
  let next = 0;
  const started = wallNow();
  const loop = async () => {
    while (next < payloads.length) {
      const data = payloads[next++] as AlertEvent;
      await queue.add("alerts.ingest", data, { jobId: randomId() });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return started;
}

async function measureCeiling(
  redisUrl: string,
  prefix: string,
  workerConcurrency: number,
  redisPid: number | undefined,
) {
  const jobs = opts.ceilingJobs;
  const stream = new EventStream(opts.seed ^ 0x5eed, opts.window);
  const payloads = Array.from(
    { length: jobs },
    () => JSON.parse(stream.next().body.toString()) as AlertEvent,
  );
  // The API's producer connection: auto-pipelining, fail fast.
  const connection = new Redis(redisUrl, {
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
  });
  cleanups.push({ name: "ceiling redis", run: async () => connection.disconnect() });
  const queue = new Queue(QUEUE, {
    connection,
    prefix,
    defaultJobOptions: alertIngestionQueue.defaultJobOptions,
  });
  await queue.waitUntilReady();

  // 1. add only (no consumer)
  const addStarted = await addAll(queue, payloads, opts.ceilingConcurrency);
  const addSeconds = (wallNow() - addStarted) / 1000;

  // 2. process only: the no-op worker drains what step 1 added
  const { child, message, stop } = startNoopWorker();
  const ready = message("ready");
  let done = message("done");
  child.send({ type: "expect", jobs });
  child.send({ type: "start", redisUrl, prefix, queue: QUEUE, concurrency: workerConcurrency });
  const processStarted = await ready;
  const processSeconds = ((await done) - processStarted) / 1000;

  // 3. add and process at once
  done = message("done");
  child.send({ type: "expect", jobs });
  const pids = { "noop worker": child.pid, redis: redisPid };
  const cpuBefore = sampleCpu(pids, false);
  const bothStarted = await addAll(queue, payloads, opts.ceilingConcurrency);
  const bothAddSeconds = (wallNow() - bothStarted) / 1000;
  const bothSeconds = ((await done) - bothStarted) / 1000;
  const cpu = cpuLines(cpuBefore, sampleCpu(pids, false), jobs, "job");

  await stop();
  await queue.close();
  return {
    jobs,
    add: jobs / addSeconds,
    process: jobs / processSeconds,
    bothAdd: jobs / bothAddSeconds,
    both: jobs / bothSeconds,
    cpu,
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const env = loadTestEnv();
  const id = randomBytes(5).toString("hex");
  const dbName = `conveyor_bench_${id}`;
  const prefix = `bench-${id}`;
  const logDir = path.join(os.tmpdir(), `conveyor-bench-${id}`);
  mkdirSync(logDir, { recursive: true });
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  const workerConcurrency =
    opts.workerConcurrency ?? Number(rawEnv("WORKER_CONCURRENCY_ALERT_INGESTION") ?? 256);

  out("Conveyor alert ingestion benchmark");
  out(
    `  ${os.cpus().length} cores, node ${process.version}; ${opts.seconds} s measured after ${opts.warmup} s warm-up, ` +
      `${opts.connections} connections, ${opts.window} open alerts, seed ${opts.seed}`,
  );
  out(
    `  children: LOG_LEVEL=${opts.logLevel}, WORKER_CONCURRENCY_ALERT_INGESTION=${workerConcurrency}` +
      `${opts.batchMax ? `, ALERTS_BATCH_MAX=${opts.batchMax}` : ""}${opts.poolMax ? `, DB_POOL_MAX=${opts.poolMax}` : ""}` +
      `; database ${dbName}, queue prefix ${prefix}`,
  );

  // Database, Redis, cleanup of both.
  const dbUrl = await createDatabase(env.TEST_PG_URL, dbName);
  const redis = redisDeletingKeysAtCleanup(env.TEST_REDIS_URL, prefix);
  removeLogsAtCleanup(logDir, opts.keepLogs);
  const redisPid = await redisServerPid(redis);

  // Children: the API first (it migrates), then the worker.
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = {
    ...inheritedEnv(),
    NODE_ENV: "production",
    DATABASE_URL: dbUrl,
    REDIS_URL: env.TEST_REDIS_URL,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: opts.logLevel,
    // The API serves /v1/secrets too and refuses to start in production without these.
    JOB_SEAL_KEY: rawEnv("JOB_SEAL_KEY") ?? randomBytes(32).toString("base64"),
    SECRETS_KDF_SALT: rawEnv("SECRETS_KDF_SALT") ?? randomBytes(16).toString("hex"),
    ...identityEnv(),
    ...(opts.poolMax ? { DB_POOL_MAX: String(opts.poolMax) } : {}),
  };
  const api = startChild(
    "api",
    "api/server.ts",
    { ...childEnv, PORT: String(port), HOST: "127.0.0.1" },
    logDir,
    { cpuProfDir: opts.cpuProf },
  );
  await waitUntilReady(api, port);
  const worker = startChild(
    "worker",
    "workers/main.ts",
    {
      ...childEnv,
      WORKER_QUEUES: QUEUE,
      WORKER_CONCURRENCY_ALERT_INGESTION: String(workerConcurrency),
      ...(opts.batchMax ? { ALERTS_BATCH_MAX: String(opts.batchMax) } : {}),
    },
    logDir,
    { cpuProfDir: opts.cpuProf },
  );
  const probe = new Queue(QUEUE, { connection: redis, prefix });
  await unlessExits(
    worker,
    waitFor("worker", async () => (await probe.getWorkersCount()) > 0, 60_000),
  );
  const check = postgres(dbUrl, { max: 1, idle_timeout: 0, onnotice: () => {} });
  cleanups.push({ name: "bench pg client", run: () => check.end({ timeout: 5 }) });
  note(`api on :${port} (pid ${api.proc.pid}), worker pid ${worker.proc.pid}; logs in ${logDir}`);

  const stream = new EventStream(opts.seed, opts.window);
  const ledger = new Ledger();
  const { senders, close: closeSenders } = makeSenders(opts.client, port, opts.connections);
  cleanups.push({ name: "http client", run: async () => closeSenders() });
  const load = (seconds: number) =>
    unlessExits(api, runLoad({ senders, seconds, rate: opts.rate, stream, ledger }));

  // Warm-up (JIT, pools, connections), drained before the measurement starts.
  if (opts.warmup > 0) {
    const warm = await load(opts.warmup);
    await waitFor("warm-up drain", async () => (await pendingJobs(probe)) === 0, 120_000);
    note(`warm-up: ${fmt(warm.accepted)} events accepted (p99 ${fmt(percentile(warm.latencies, 99), 1)} ms)`);
  }
  const warmEvents = ledger.events;

  // The measurement's events are made beforehand: enough for twice the target rate (or the
  // open-loop rate); past them the stream makes more on the fly.
  stream.prefill(Math.min(400_000, (opts.rate || 2 * TARGET.eventsPerSecond) * opts.seconds));

  // Is anything else using the machine? On a few cores a neighbour skews every figure.
  const pids = { api: api.proc.pid, worker: worker.proc.pid, redis: redisPid };
  const quietStart = sampleCpu(pids);
  await sleep(1_000);
  const cpuStart = sampleCpu(pids);
  const busyBefore = machineBusy(quietStart, cpuStart);

  // The measurement.
  const result = await load(opts.seconds);
  const cpuLoad = sampleCpu(pids);
  const pendingAtLastAck = await pendingJobs(probe);
  const expectedAlerts = await loadExpectation(check, stream, ledger);
  const { visibleAt, pendingAtEnd } = await unlessExits(
    worker,
    waitUntilVisible(probe, check, workerConcurrency),
  );
  const cpuDrain = sampleCpu(pids);
  const { lost, rows, extraRows } = await countLost(check, stream, ledger);
  const failed = (await probe.getJobCounts("failed")).failed ?? 0;

  await probe.close();
  await api.stop();
  await worker.stop();

  const measured = ledger.events - warmEvents;
  const loadSeconds = (result.lastAckAt - result.firstPostAt) / 1000;
  const e2eSeconds = visibleAt === undefined ? Number.NaN : (visibleAt - result.firstPostAt) / 1000;
  const e2e = measured / e2eSeconds;
  const p50 = percentile(result.latencies, 50);
  const p99 = percentile(result.latencies, 99);
  const otherStatuses = [...result.rejected].map(([s, n]) => `${s}×${n}`).join(" ") || "none";

  out();
  out("End to end: HTTP POST → API → BullMQ → worker → Postgres");
  out(
    `  posted          ${fmt(result.sent)} events in ${fmt(loadSeconds, 2)} s = ${fmt(result.sent / loadSeconds)} req/s; ` +
      `202: ${fmt(result.accepted)}, other answers: ${otherStatuses}`,
  );
  out(
    `  ack latency     p50 ${fmt(p50, 2)} ms, p90 ${fmt(percentile(result.latencies, 90), 2)} ms, ` +
      `p99 ${fmt(p99, 2)} ms, p99.9 ${fmt(percentile(result.latencies, 99.9), 2)} ms, max ${fmt(percentile(result.latencies, 100), 1)} ms`,
  );
  out(
    `  queue backlog   ${fmt(pendingAtLastAck)} jobs at the last ack; all visible in Postgres ` +
      (visibleAt === undefined
        ? `NEVER (${fmt(pendingAtEnd)} jobs still pending)`
        : `${fmt((visibleAt - result.lastAckAt) / 1000, 2)} s after it`),
  );
  out(
    `  end to end      ${fmt(e2e)} events/s (${fmt(measured)} acknowledged events ÷ ${fmt(e2eSeconds, 2)} s ` +
      "from first post to last visible in Postgres)",
  );
  out(
    `  events lost     ${fmt(lost)} of ${fmt(ledger.events)} acknowledged incl. warm-up ` +
      `(${fmt(expectedAlerts)} alerts expected, ${fmt(rows)} rows, ${fmt(extraRows)} unexpected; failed jobs ${fmt(failed)})`,
  );
  const [loadShare] = cpuLines(cpuStart, cpuLoad);
  const [wholeShare, wholePerEvent] = cpuLines(cpuStart, cpuDrain, measured);
  out(`  CPU, posting    ${loadShare}`);
  out(`  CPU, whole run  ${wholeShare}`);
  out(`  CPU µs/event    ${wholePerEvent}`);
  if (busyBefore > 15)
    out(
      `  WARNING         the machine was ${fmt(busyBefore)}% busy just before the run: figures are disturbed`,
    );

  let ceiling: Awaited<ReturnType<typeof measureCeiling>> | undefined;
  if (opts.ceiling) {
    ceiling = await measureCeiling(env.TEST_REDIS_URL, `${prefix}-ceiling`, workerConcurrency, redisPid);
    out();
    out(
      `Raw BullMQ ceiling: same Redis, ${fmt(ceiling.jobs)} jobs per phase (alert payloads, alert-ingestion job options), ` +
        `${opts.ceilingConcurrency} concurrent Queue.add, no-op Worker (own process) concurrency ${workerConcurrency}`,
    );
    out(`  add only        ${fmt(ceiling.add)} jobs/s`);
    out(`  process only    ${fmt(ceiling.process)} jobs/s`);
    out(
      `  add + process   ${fmt(ceiling.both)} jobs/s end to end (adds alone ran at ${fmt(ceiling.bothAdd)} jobs/s)`,
    );
    out(`  CPU, add+proc.  ${ceiling.cpu[0]} (bench = the adds)`);
    out(`  CPU µs/job      ${ceiling.cpu[1]}`);
    out(
      `  ratio           end to end ÷ ceiling = ${fmt(e2e, 0)} ÷ ${fmt(ceiling.both)} = ${fmt(e2e / ceiling.both, 2)}`,
    );
  }

  out();
  out(`Target: ≥ ${fmt(TARGET.eventsPerSecond)} events/s end to end, ack p99 < ${TARGET.p99Ms} ms, 0 lost`);
  const line = (ok: boolean, what: string) => out(`  ${ok ? "PASS" : "FAIL"}  ${what}`);
  line(e2e >= TARGET.eventsPerSecond, `throughput ${fmt(e2e)} events/s`);
  line(p99 < TARGET.p99Ms, `ack p99 ${fmt(p99, 2)} ms`);
  line(lost === 0 && visibleAt !== undefined, `lost ${fmt(lost)}`);
  return lost > 0 || visibleAt === undefined ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (err) {
  if (signalledAt !== undefined) process.stderr.write("interrupted\n");
  else
    process.stderr.write(
      `benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
} finally {
  await cleanup();
}
process.exit(status);
