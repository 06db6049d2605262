// Redis for the all-in-one dev start: probe a server, and run a private redis-server (the one
// on PATH) with its data in DEV_DATA_DIR when none answers.
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Redis, ReplyError } from "ioredis";
import { withTimeout } from "../lib/timeout.js";
import {
  adoptServer,
  type DevServer,
  DevStartError,
  isAlive,
  pickPort,
  readServerState,
  type SpawnedServer,
  spawnServer,
  waitUntilReady,
  writeServerState,
} from "./processes.js";

/** The private server's port when it is free: next to the usual 6379, never on it. */
export const PRIVATE_REDIS_PORT = 6380;

export type RedisProbe =
  | { state: "ok" }
  /** Nothing speaks Redis there: refused, timed out, or something else on the port. */
  | { state: "absent"; reason: string }
  /** A server answered and refused us (NOAUTH, WRONGPASS, …): not ours to replace. */
  | { state: "refused"; reason: string };

// Something on the port that is not Redis may never answer PING.
const PROBE_TIMEOUT_MS = 3_000;

export async function probeRedis(url: string): Promise<RedisProbe> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_500,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // A refused AUTH arrives as an "error" event, and connect()/ping() then only say the
  // connection closed; the listener keeps it (and stops ioredis printing it).
  let emitted: unknown;
  redis.on("error", (err) => {
    emitted ??= err;
  });
  try {
    await withTimeout(
      (async () => {
        await redis.connect();
        const pong = await redis.ping();
        if (pong !== "PONG") throw new Error(`PING answered ${pong}`);
      })(),
      PROBE_TIMEOUT_MS,
    );
    return { state: "ok" };
  } catch (err) {
    const cause = emitted ?? err;
    if (cause instanceof ReplyError) return { state: "refused", reason: (cause as Error).message };
    return { state: "absent", reason: (cause as Error).message || String(cause) };
  } finally {
    redis.disconnect();
  }
}

const INSTALL_HINT =
  "Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), " +
  "start a Redis on 127.0.0.1:6379 (docker run -p 6379:6379 redis:7), or set REDIS_URL.";

/**
 * Starts (or reuses) a private redis-server with its data in `dataDir/redis`. A server already
 * running on that directory is reused: taken over when the start that launched it is gone,
 * left to that start when it still runs.
 */
export async function startPrivateRedis(opts: { dataDir: string; unreachable: string }): Promise<DevServer> {
  const dir = join(opts.dataDir, "redis");
  const logFile = join(opts.dataDir, "redis.log");
  const stateFile = join(opts.dataDir, "redis.json");
  const pidFile = join(dir, "redis.pid");
  const origin = `private redis-server, data in ${dir}`;
  // SIGTERM: redis-server flushes the append-only file and exits.
  const stopSignal = "SIGTERM";
  await mkdir(dir, { recursive: true });

  const pid = Number(await readFile(pidFile, "utf8").catch(() => ""));
  const state = await readServerState(stateFile);
  if (pid > 0 && isAlive(pid) && state) {
    const url = `redis://127.0.0.1:${state.port}`;
    if ((await probeRedis(url)).state === "ok") {
      const { stop } = await adoptServer({ stateFile, pid, port: state.port, stopSignal });
      return { url, origin: `${origin}, already running as pid ${pid}`, ours: true, stop };
    }
  }

  const port = await pickPort(PRIVATE_REDIS_PORT);
  let server: SpawnedServer;
  try {
    server = await spawnServer(
      "redis-server",
      [
        ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir],
        // A dev start: no snapshots, but an append-only file so queued jobs survive a restart.
        ...["--save", "", "--appendonly", "yes"],
        // BullMQ loses jobs under any eviction policy.
        ...["--maxmemory-policy", "noeviction"],
        ...["--pidfile", pidFile, "--daemonize", "no", "--logfile", ""],
      ],
      { logFile, stopSignal },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new DevStartError(
        `no Redis answers at ${opts.unreachable}, and there is no redis-server on PATH to start one. ${INSTALL_HINT}`,
      );
    }
    throw err;
  }
  const url = `redis://127.0.0.1:${port}`;
  await waitUntilReady(server, async () => (await probeRedis(url)).state === "ok", {
    what: "the private redis-server",
    logFile,
  });
  await writeServerState(stateFile, port);
  return { url, origin, ours: true, stop: () => server.stop() };
}
