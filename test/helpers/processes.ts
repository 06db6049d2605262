// Real child processes for the process tier: an entry compiled by test/build-setup.ts, run by
// node itself (one process, so signals reach it directly, unlike `npm start` which puts npm in
// between), its JSON log lines collected, and every process killed by killAll() at the end.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inject } from "vitest";
import { rawEnv } from "../../lib/config.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string; pid?: number };

export interface ChildHandle {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Parsed JSON lines of stdout, in order; lines that are not JSON are kept as { msg: line }. */
  lines: LogLine[];
  /** Everything written to stderr, for failure messages. */
  stderr(): string;
  /** Resolves with the first line (seen or to come) that `match` accepts. */
  waitForLine(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves when the process has exited, or rejects after `timeoutMs`. */
  waitForExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: boolean;
}

const running = new Set<ChildHandle>();

/** The compiled form of a source entry (`api/server.ts`), as the process tier's build emitted it. */
function compiled(script: string): string {
  const buildDir = inject("buildDir");
  if (!buildDir)
    throw new Error(`no build to run ${script} from: only *.process.test.ts files start processes`);
  const file = join(buildDir, script.replace(/\.ts$/, ".js"));
  if (!existsSync(file)) throw new Error(`${file} was not built: is ${script} in tsconfig.test-build.json?`);
  return file;
}

/**
 * Starts the compiled `script` (a source path such as `api/server.ts`) with node, from the repo
 * root, with exactly `env` (plus PATH). Stack traces point at the TypeScript source.
 */
export function startProcess(name: string, script: string, env: Record<string, string>): ChildHandle {
  const child = spawn(process.execPath, ["--enable-source-maps", compiled(script)], {
    cwd: ROOT,
    env: { PATH: rawEnv("PATH") ?? "", NODE_ENV: "test", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error(`could not start ${script}`);
  const lines: LogLine[] = [];
  const listeners = new Set<(line: LogLine) => void>();
  let stderr = "";
  let buffered = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const raw of parts.filter(Boolean)) {
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { msg: raw };
      }
      lines.push(line);
      for (const listener of listeners) listener(line);
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exit = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let exited = false;
  void exit.then(() => {
    exited = true;
    running.delete(handle);
  });

  const describe = () =>
    `${name} (pid ${child.pid}); last lines: ${lines
      .slice(-5)
      .map((l) => JSON.stringify(l))
      .join("\n")}; stderr: ${stderr.slice(-2000) || "(empty)"}`;
  const handle: ChildHandle = {
    name,
    child,
    pid: child.pid,
    lines,
    stderr: () => stderr,
    get exited() {
      return exited;
    },
    waitForLine(match, timeoutMs = 20_000) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(new Error(`no matching log line within ${timeoutMs} ms from ${describe()}`));
        }, timeoutMs);
        const listener = (line: LogLine) => {
          if (!match(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(line);
        };
        listeners.add(listener);
        void exit.then(([code, signal]) => {
          if (!listeners.has(listener)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          reject(new Error(`exited (code ${code}, signal ${signal}) before the log line: ${describe()}`));
        });
      });
    },
    async waitForExit(timeoutMs = 20_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`did not exit within ${timeoutMs} ms: ${describe()}`)),
          timeoutMs,
        );
      });
      try {
        const [code, signal] = await Promise.race([exit, timeout]);
        return { code, signal };
      } finally {
        clearTimeout(timer);
      }
    },
  };
  running.add(handle);
  return handle;
}

/** SIGKILLs every process still running and waits for them; for afterEach/afterAll. */
export async function killAll(): Promise<void> {
  const left = [...running];
  for (const handle of left) handle.child.kill("SIGKILL");
  await Promise.allSettled(left.map((h) => h.waitForExit(5_000)));
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
