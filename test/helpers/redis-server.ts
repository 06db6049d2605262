// A redis-server of a test's own, on a free port, for what the shared one must not suffer:
// being stopped and restarted (an outage), or settings such as a password.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./processes.js";

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:{port} */
  url: string;
  /** Starts it (again, on the same port and directory, so an AOF is replayed). */
  start(): Promise<void>;
  /** SIGTERM, and waits for the exit; harmless when stopped. */
  stop(): Promise<void>;
  readonly running: boolean;
  /** Sends a signal to it: SIGSTOP freezes it with its sockets open, SIGCONT resumes it. */
  signal(signal: NodeJS.Signals): void;
  /** Stops it and removes its directory. */
  remove(): Promise<void>;
}

/** A redis-server started with `args` on top of a port, 127.0.0.1 and a directory of its own. */
export async function startRedisServer(args: string[] = ["--save", ""]): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), "conveyor-redis-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== undefined && child.exitCode === null;
    },
    async start() {
      const started = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...args],
        {
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      child = started;
      let out = "";
      await new Promise<void>((resolve, reject) => {
        started.stdout?.on("data", (chunk: Buffer) => {
          out += String(chunk);
          if (/Ready to accept connections/.test(out)) resolve();
        });
        started.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
      });
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = once(running, "exit");
      running.kill("SIGTERM");
      await exited;
    },
    signal(signal) {
      child?.kill(signal);
    },
    async remove() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
