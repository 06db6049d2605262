// Server processes the all-in-one dev start runs for itself (embedded Postgres, a private
// redis-server): ports, spawning, readiness and stopping. Only `npm start` uses this.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, openSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";

/** A dependency the dev start could neither find nor start; the message says what to do. */
export class DevStartError extends Error {
  override readonly name = "DevStartError";
}

/** A server the dev start uses: where it is, and how to stop it when the start owns it. */
export interface DevServer {
  url: string;
  /** How it was found, for the start banner: "DATABASE_URL", "embedded, data in .data/postgres", … */
  origin: string;
  /** Started by a dev start (this one or an earlier one), so its URL holds only dev credentials. */
  ours?: boolean;
  /** Present only when this start launched the server, so stopping it is this start's job. */
  stop?: () => Promise<void>;
}

/** Resolves true when nothing listens on host:port (an actual bind, so it is never a guess). */
export function isPortFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS says is free now. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** `preferred` when free (a stable URL from one start to the next), otherwise any free port. */
export async function pickPort(preferred: number): Promise<number> {
  return (await isPortFree(preferred)) ? preferred : freePort();
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, only not ours to signal.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// Children still running when Node exits without the shutdown registry (a crash, process.exit
// from a failed start, the registry's deadline) get their stop signal from the "exit" hook, so
// a dev start never leaves a database behind it. SIGKILL of Node is the one case left: the next
// start finds the server through its pid file and reuses it.
const running = new Map<ChildProcess, NodeJS.Signals>();
let exitHookInstalled = false;

function stopAllOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const [child, signal] of running)
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

export interface SpawnedServer {
  child: ChildProcess;
  /** Sends the stop signal, waits for the exit, escalates to SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Starts a server in a session of its own (detached): a Ctrl-C in the terminal goes to the
 * whole foreground process group, and a server in that group would stop at once, while the
 * workers and pools that use it are still closing. Node stops it last, through the registry.
 */
export async function spawnServer(
  command: string,
  args: string[],
  opts: { logFile: string; stopSignal: NodeJS.Signals; uid?: number; gid?: number },
): Promise<SpawnedServer> {
  // Output goes to a file: a pipe to Node would break when Node exits first.
  const log = openSync(opts.logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(command, args, {
      detached: true,
      stdio: ["ignore", log, log],
      ...(opts.uid === undefined ? {} : { uid: opts.uid }),
      ...(opts.gid === undefined ? {} : { gid: opts.gid }),
    });
    await once(child, "spawn");
  } finally {
    closeSync(log);
  }
  running.set(child, opts.stopSignal);
  stopAllOnExit();
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  void exited.then(() => running.delete(child));
  return {
    child,
    async stop(timeoutMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(opts.stopSignal);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), timeoutMs);
      });
      if ((await Promise.race([exited, late])) === "late") {
        child.kill("SIGKILL");
        await exited;
      }
      clearTimeout(timer);
    },
  };
}

/**
 * Polls `answers` until it resolves true. Fails early, with the end of the server's log, when
 * the process exits (a bad data directory, a port taken meanwhile), or after `timeoutMs`.
 */
export async function waitUntilReady(
  server: SpawnedServer,
  answers: () => Promise<boolean>,
  opts: { what: string; logFile: string; timeoutMs?: number },
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  const { child } = server;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new DevStartError(
        `${opts.what} exited during start (${child.exitCode ?? child.signalCode}); the end of ${opts.logFile}:\n` +
          (await logTail(opts.logFile)),
      );
    }
    if (await answers()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  await server.stop(2_000);
  throw new DevStartError(
    `${opts.what} did not answer within ${opts.timeoutMs ?? 30_000} ms; the end of ${opts.logFile}:\n` +
      (await logTail(opts.logFile)),
  );
}

/**
 * What a start records beside a server it launched: its own pid (the owner) and the port.
 * Redis's pid file names no port, and the owner is how a later start tells a server left
 * behind by a start that died (SIGKILL, a crash) from one another start is still using.
 */
export interface ServerState {
  ownerPid: number;
  port: number;
}

export async function readServerState(file: string): Promise<ServerState | undefined> {
  try {
    const state = JSON.parse(await readFile(file, "utf8")) as Partial<ServerState>;
    return Number.isInteger(state.ownerPid) && Number.isInteger(state.port)
      ? (state as ServerState)
      : undefined;
  } catch {
    return undefined;
  }
}

export const writeServerState = (file: string, port: number): Promise<void> =>
  writeFile(file, `${JSON.stringify({ ownerPid: process.pid, port } satisfies ServerState)}\n`);

/** Stops a server this process did not spawn (so there is no ChildProcess to wait on). */
export async function stopPid(pid: number, signal: NodeJS.Signals, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A server found running on our data directory: when the start that launched it is gone, this
 * one takes it over and stops it on shutdown (Ctrl-C stops everything, even after a crash);
 * when that start still runs, the server is its to stop, and only used here.
 */
export async function adoptServer(opts: {
  stateFile: string;
  pid: number;
  port: number;
  stopSignal: NodeJS.Signals;
}): Promise<{ stop?: () => Promise<void>; owner?: number }> {
  const state = await readServerState(opts.stateFile);
  if (state && state.ownerPid !== process.pid && isAlive(state.ownerPid)) return { owner: state.ownerPid };
  await writeServerState(opts.stateFile, opts.port);
  return { stop: () => stopPid(opts.pid, opts.stopSignal) };
}

export async function logTail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text
    .trimEnd()
    .split("\n")
    .slice(-lines)
    .map((l) => `  ${l}`)
    .join("\n");
}
