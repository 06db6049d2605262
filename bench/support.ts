// What the benchmarks share: options, output, cleanup, children, /proc CPU, run's database and Redis keys.

import { type ChildProcess, fork, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer, connect as netConnect, type Socket } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import postgres from "postgres";
import { deleteKeys } from "../lib/redis.js";

/** The repository's root: the children's working directory. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

// ---------------------------------------------------------------- options and printing

/** The integer value of option `--name`, at least `min`; anything else ends the process (status 2). */
export function intArg(name: string, raw: string | undefined, min: number): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min} (got ${raw})\n`);
    process.exit(2);
  }
  return value;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export const fmt = (n: number, digits = 0) =>
  n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** A line of figures, on stdout. */
export const out = (line = "") => process.stdout.write(`${line}\n`);
/** A line of progress, on stderr. */
export const note = (line: string) => process.stderr.write(`· ${line}\n`);

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

// ---------------------------------------------------------------- cleanup

/** What to undo at the end, run last-registered first by `cleanup()`. */
export const cleanups: { name: string; run: () => Promise<unknown> }[] = [];
let cleaningUp: Promise<void> | undefined;

/** Runs every registered cleanup once, however often it is called; a failing one does not stop the rest. */
export function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const { name, run } of cleanups.splice(0).reverse()) {
      try {
        await run();
      } catch (err) {
        process.stderr.write(`cleanup ${name} failed: ${(err as Error).message}\n`);
      }
    }
  })();
  return cleaningUp;
}

/** Removes `logDir` at cleanup, or only says where it is when the logs are to be kept. */
export function removeLogsAtCleanup(logDir: string, keep: boolean): void {
  cleanups.push({
    name: "logs",
    run: async () => {
      if (keep) note(`logs kept in ${logDir}`);
      else rmSync(logDir, { recursive: true, force: true });
    },
  });
}

// ---------------------------------------------------------------- child processes

/** How a child runs TypeScript: through tsx, with bench/parent-guard.ts preloaded. */
export const TSX_WITH_PARENT_GUARD: readonly string[] = [
  "--import",
  "tsx",
  "--import",
  "./bench/parent-guard.ts",
];

/** `--cpu-prof` into `dir`/`name` when `dir` is set. */
export function cpuProfArgs(dir: string | undefined, name: string): string[] {
  // One directory per child: the tsx loader thread writes a profile of its own next to the main one.
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${path.join(dir, name)}`] : [];
}

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  logFile: string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * A node child process (`nodeArgs`, `--cpu-prof` when `cpuProfDir` is set, then `entry`) whose output
 * goes to `logDir`/`name`.log, with an IPC channel for the parent guard; stopped at cleanup (and by
 * `stop()`): SIGTERM, then SIGKILL after `stopTimeoutMs`.
 */
export function startChild(
  name: string,
  entry: string,
  env: NodeJS.ProcessEnv,
  logDir: string,
  options: { nodeArgs?: readonly string[]; cpuProfDir?: string | undefined; stopTimeoutMs?: number } = {},
): Child {
  const { nodeArgs = TSX_WITH_PARENT_GUARD, cpuProfDir, stopTimeoutMs = 20_000 } = options;
  const logFile = path.join(logDir, `${name}.log`);
  const fd = openSync(logFile, "a");
  const proc = spawn(process.execPath, [...nodeArgs, ...cpuProfArgs(cpuProfDir, name), entry], {
    cwd: ROOT,
    env,
    stdio: ["ignore", fd, fd, "ipc"],
  });
  closeSync(fd);
  if (proc.pid === undefined) throw new Error(`could not start ${entry}`);
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    logFile,
    exited,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const done = await Promise.race([exited.then(() => true), sleep(stopTimeoutMs).then(() => false)]);
      if (!done) {
        proc.kill("SIGKILL");
        await exited;
      }
    },
  };
  cleanups.push({ name: `stop ${name}`, run: () => child.stop() });
  return child;
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Rejects when the child exits before `promise` settles. */
export function unlessExits<T>(child: Child, promise: Promise<T>): Promise<T> {
  return Promise.race([
    promise,
    child.exited.then((code) => {
      throw new Error(`${child.name} exited (code ${code}) early; log tail:\n${tail(child.logFile)}`);
    }),
  ]);
}

/** Polls `check` every `pollMs` until it answers true; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  pollMs = 50,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await sleep(pollMs);
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms`);
}

/** Waits (up to 60 s) until the API `child` listening on `port` answers /ready with 200; rejects if it exits. */
export function waitUntilReady(child: Child, port: number): Promise<void> {
  return unlessExits(
    child,
    waitFor(child.name, async () => (await fetch(`http://127.0.0.1:${port}/ready`)).status === 200, 60_000),
  );
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------- CPU accounting (Linux /proc)

/** Clock ticks per second of /proc's CPU times. */
export const CLOCK_TICKS = 100;

/** CPU clock ticks (user + system) a process has used so far; NaN when it cannot be read. */
export function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return Number.NaN;
  }
}

/** Busy and total clock ticks of the whole machine (all cores). */
export function machineTicks(): { busy: number; total: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: Number.NaN, total: Number.NaN };
  }
}

// ---------------------------------------------------------------- the run's database and Redis keys

/** Creates database `name` on the server of `serverUrl`, dropped at cleanup; returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  cleanups.push({
    name: "drop database",
    run: async () => {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 5 });
    },
  });
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A Redis connection that, at cleanup, deletes every key under `prefix` and then disconnects. */
export function redisDeletingKeysAtCleanup(redisUrl: string, prefix: string): Redis {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  cleanups.push({
    name: "delete Redis keys",
    run: async () => {
      const deleted = await deleteKeys(redis, `${prefix}*`);
      note(`deleted ${deleted} Redis keys under ${prefix}*`);
      redis.disconnect();
    },
  });
  return redis;
}

/** The Redis server's process id (from INFO), when it reports one. */
export async function redisServerPid(redis: Redis): Promise<number | undefined> {
  return Number(/process_id:(\d+)/.exec(await redis.info("server"))?.[1]) || undefined;
}

/**
 * What an API child needs to authenticate callers: fresh identity keys, and rate limits out of the
 * way (a benchmark measures the work, not the limiter's refusals). `anonymous`: the areas callers
 * without credentials may use (ANONYMOUS_ACCESS), as the seeds' clients do.
 */
export function identityEnv(anonymous: readonly ("secrets" | "files")[] = []): Record<string, string> {
  const key = () => randomBytes(32).toString("base64");
  const unlimited = String(1_000_000_000);
  return {
    API_KEY_HASH_KEY: key(),
    ACCOUNT_DATA_KEY: key(),
    JWT_SIGNING_KEY: key(),
    ANONYMOUS_ACCESS: anonymous.join(","),
    AUTH_FAILURES_PER_ADDRESS: unlimited,
    ...Object.fromEntries(
      ["ADMIN", "OPS", "QUANT", "CLIENT", "ANONYMOUS"].map((role) => [`RATE_LIMIT_${role}`, unlimited]),
    ),
  };
}

/**
 * One keep-alive HTTP/1.1 connection speaking just enough of the protocol for a benchmark (one
 * request at a time, Content-Length or chunked answers). On a small machine (two cores) the client
 * shares the cores with everything under test, so it must cost as little CPU as possible: this
 * costs a fraction of node:http's client (`bench:alerts -- --client node` to compare).
 */
export class RawConnection {
  private socket: Socket | undefined;
  private buffered: Buffer | undefined;
  private waiting: ((status: number) => void) | undefined;
  private closed = false;

  constructor(private readonly port: number) {}

  private connect(): Socket {
    const socket = netConnect({ port: this.port, host: "127.0.0.1", noDelay: true });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    const fail = () => {
      if (this.socket === socket) this.socket = undefined;
      this.buffered = undefined;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(0);
    };
    socket.on("error", fail);
    socket.on("close", fail);
    this.socket = socket;
    return socket;
  }

  /** Resolves with the response status, or 0 when the connection failed. */
  send(request: Buffer): Promise<number> {
    if (this.closed) return Promise.resolve(0);
    return new Promise((resolve) => {
      this.waiting = resolve;
      (this.socket ?? this.connect()).write(request);
    });
  }

  private onData(chunk: Buffer): void {
    const data = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    const headEnd = data.indexOf("\r\n\r\n");
    if (headEnd === -1) {
      this.buffered = data;
      return;
    }
    const head = data.toString("latin1", 0, headEnd).toLowerCase();
    const bodyStart = headEnd + 4;
    let complete: number;
    const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
    if (length) complete = bodyStart + Number(length[1]);
    else if (head.includes("transfer-encoding: chunked")) {
      const last = data.indexOf("0\r\n\r\n", bodyStart);
      complete = last === -1 ? Number.POSITIVE_INFINITY : last + 5;
    } else complete = bodyStart;
    if (data.length < complete) {
      this.buffered = data;
      return;
    }
    // One request in flight per connection: nothing can follow the answer.
    this.buffered = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.(Number(head.slice(9, 12)));
  }

  close(): void {
    this.closed = true;
    this.socket?.destroy();
  }
}

/**
 * The no-op BullMQ worker (bench/noop-worker.ts) as a child process, stopped at cleanup;
 * `message(type)` resolves with the instant of its next message of that type; `stop()` ends it.
 */
export function startNoopWorker() {
  const child = fork(path.join(ROOT, "bench/noop-worker.ts"), [], {
    cwd: ROOT,
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const childExited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  cleanups.push({
    name: "stop noop worker",
    run: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await Promise.race([childExited, sleep(5_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  });
  const message = (type: string) =>
    new Promise<number>((resolve, reject) => {
      const onMessage = (m: { type: string; at: number }) => {
        if (m.type !== type) return;
        child.off("message", onMessage);
        resolve(m.at);
      };
      child.on("message", onMessage);
      setTimeout(() => reject(new Error(`noop worker: no "${type}" within 120 s`)), 120_000).unref();
    });
  /** SIGTERM, and waits for the exit (5 s at most). */
  const stop = async () => {
    child.kill("SIGTERM");
    await Promise.race([childExited, sleep(5_000)]);
  };
  return { child, message, stop };
}
