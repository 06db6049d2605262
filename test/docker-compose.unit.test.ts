// The production shape in docker-compose.yml and the Dockerfile, checked by reading them (no
// Docker engine runs here): the five services, persistence where it matters and none where it
// must not be, health checks, variables lib/config.ts knows, commands that run files the build
// emits. test/healthchecks.process.test.ts runs the api and worker health checks for real.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { apiConfigSchema, workerConfigSchema } from "../domains/config.js";
import { argv, compose, ROOT, read, type Service, service } from "./helpers/compose.js";

const flag = (args: string[], name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const environment = (s: Service): Record<string, string | null> => {
  const env = s.environment ?? {};
  if (Array.isArray(env))
    return Object.fromEntries(
      env.map((entry) => {
        const eq = entry.indexOf("=");
        return eq < 0 ? [entry, null] : [entry.slice(0, eq), entry.slice(eq + 1)];
      }),
    );
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? null : String(v)]));
};

const dependsOn = (s: Service): Record<string, string | undefined> =>
  Array.isArray(s.depends_on)
    ? Object.fromEntries(s.depends_on.map((d) => [d, undefined]))
    : Object.fromEntries(Object.entries(s.depends_on ?? {}).map(([d, v]) => [d, v.condition]));

/** Compose durations: "30s", "1m30s", "1500ms". */
function durationMs(value: string | undefined): number {
  if (!value) return 0;
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1, us: 0.001 };
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  if (parts.map((p) => p[0]).join("") !== value) throw new Error(`not a duration: ${value}`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? ""] ?? 0), 0);
}

const PLACEHOLDER = "supplied-by-the-operator-0123456789";

/**
 * Compose interpolation: ${VAR:-default} and ${VAR-default} take the default, ${VAR:?msg},
 * ${VAR?msg} and ${VAR} a placeholder (their keys are returned as `supplied`); $$ is a dollar.
 * A variable with no value (`KEY:`) is left unset, as Compose leaves it.
 */
function interpolate(env: Record<string, string | null>) {
  const values: Record<string, string> = {};
  const supplied = new Set<string>();
  for (const [key, raw] of Object.entries(env)) {
    if (raw === null) continue;
    values[key] = raw
      .replace(
        /\$\{(\w+)(?::?([-?])([^}]*))?\}/g,
        (_m, _v, op: string | undefined, arg: string | undefined) => {
          if (op === "-") return arg ?? "";
          supplied.add(key);
          return PLACEHOLDER;
        },
      )
      .replace(/\$\$/g, "$");
  }
  return { values, supplied };
}

const volumeSource = (v: string | { source?: string }) =>
  typeof v === "string" ? v.split(":")[0] : v.source;

const APP_SCHEMAS = { api: apiConfigSchema, worker: workerConfigSchema } as const;
// Read by the files and secrets features, which may not be in lib/config.ts yet.
const LATER_VARIABLES = new Set(["FILE_STORE_URL", "JOB_SEAL_KEY", "SECRETS_KDF_SALT"]);

describe("docker-compose.yml", () => {
  it("declares the five services of the production shape", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["api", "postgres", "redis", "valkey", "worker"]);
  });

  it("gives every service a health check", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      const test = argv(s.healthcheck?.test);
      expect(s.healthcheck?.disable, name).not.toBe(true);
      expect(["CMD", "CMD-SHELL"], `${name} healthcheck.test`).toContain(test[0]);
      expect(test.length, name).toBeGreaterThan(1);
    }
  });

  it("runs Redis with AOF and noeviction on a named volume, as BullMQ requires", () => {
    const redis = service("redis");
    expect(redis.image).toMatch(/^redis:7/);
    const args = argv(redis.command);
    expect(args[0]).toBe("redis-server");
    expect(flag(args, "--appendonly")).toBe("yes");
    expect(flag(args, "--maxmemory-policy")).toBe("noeviction");
    const data = (redis.volumes ?? []).map(volumeSource);
    expect(data.length).toBeGreaterThan(0);
    for (const v of data) expect(Object.keys(compose.volumes ?? {})).toContain(v);
  });

  it("runs the Valkey file store with persistence off and no volume", () => {
    const valkey = service("valkey");
    expect(valkey.image).toMatch(/^valkey\/valkey:8/);
    const args = argv(valkey.command);
    expect(args[0]).toBe("valkey-server");
    expect(flag(args, "--save")).toBe("");
    expect(flag(args, "--appendonly")).toBe("no");
    expect(valkey.volumes ?? []).toEqual([]);
  });

  it("keeps Postgres data on a named volume and checks it with pg_isready", () => {
    const pg = service("postgres");
    expect(pg.image).toBe("postgres:16");
    const mounts = pg.volumes ?? [];
    expect(mounts.some((v) => typeof v === "string" && v.endsWith(":/var/lib/postgresql/data"))).toBe(true);
    for (const v of mounts.map(volumeSource)) expect(Object.keys(compose.volumes ?? {})).toContain(v);
    expect(argv(pg.healthcheck?.test).join(" ")).toContain("pg_isready");
  });

  it("starts api and worker from the project's image once Postgres, Redis and Valkey are healthy", () => {
    for (const name of ["api", "worker"]) {
      const s = service(name);
      expect(s.build, `${name} builds the Dockerfile`).toBeDefined();
      expect(dependsOn(s), name).toMatchObject({
        postgres: "service_healthy",
        redis: "service_healthy",
        valkey: "service_healthy",
      });
    }
    expect(service("api").image).toBe(service("worker").image);
  });

  it("runs three worker replicas and gives them longer to stop than SHUTDOWN_TIMEOUT_MS", () => {
    const worker = service("worker");
    expect(worker.deploy?.replicas).toBe(3);
    const timeout = workerConfigSchema.shape.SHUTDOWN_TIMEOUT_MS.parse(
      environment(worker).SHUTDOWN_TIMEOUT_MS ?? undefined,
    );
    expect(durationMs(worker.stop_grace_period)).toBeGreaterThan(timeout);
    // api/server.ts gives its own shutdown 10 s.
    expect(durationMs(service("api").stop_grace_period)).toBeGreaterThan(10_000);
  });

  it("sets only variables lib/config.ts knows, and values its schemas accept", () => {
    for (const [name, schema] of Object.entries(APP_SCHEMAS)) {
      const shape = schema.shape as Record<string, z.ZodType>;
      const env = environment(service(name));
      const unknown = Object.keys(env).filter((k) => !(k in shape) && !LATER_VARIABLES.has(k));
      expect(unknown, `${name} sets variables no config schema reads`).toEqual([]);
      // The whole environment as Compose would fill it in, parsed as the process will parse it:
      // a required variable that is missing, or a literal the schema rejects, fails here. Only
      // what the operator must supply (${VAR:?…}) stands in as a placeholder and is let off.
      const { values, supplied } = interpolate(env);
      const result = schema.safeParse(values);
      const problems = (result.error?.issues ?? [])
        .filter((i) => !supplied.has(String(i.path[0])))
        .map((i) => `${i.path.join(".")}: ${i.message}`);
      expect(problems, `${name}: lib/config.ts rejects the compose environment`).toEqual([]);
      expect(values.NODE_ENV, name).toBe("production");
      expect(new URL(values.REDIS_URL ?? "").hostname, `${name} REDIS_URL`).toBe("redis");
      expect(new URL(values.FILE_STORE_URL ?? "").hostname, `${name} FILE_STORE_URL`).toBe("valkey");
      expect(new URL(values.DATABASE_URL ?? "").hostname, `${name} DATABASE_URL`).toBe("postgres");
    }
  });

  it("gives the API its identity keys to supply, and leaves anonymous access off", () => {
    const { values, supplied } = interpolate(environment(service("api")));
    for (const name of ["API_KEY_HASH_KEY", "ACCOUNT_DATA_KEY", "JWT_SIGNING_KEY"])
      expect(supplied.has(name), `${name} must be supplied by the operator`).toBe(true);
    expect(apiConfigSchema.shape.ANONYMOUS_ACCESS.parse(values.ANONYMOUS_ACCESS)).toEqual([]);
  });

  it("gives the API's usage spool a volume, writable by the image's user", () => {
    const api = service("api");
    const dir = environment(api).USAGE_SPOOL_DIR;
    expect(dir).toBe("/var/lib/conveyor/spool");
    const mounted = (api.volumes ?? []).map((v) =>
      typeof v === "string" ? v.split(":") : [v.source, v.target],
    );
    expect(mounted).toContainEqual(["usage-spool", dir]);
    expect(Object.keys(compose.volumes ?? {})).toContain("usage-spool");
    expect(read("Dockerfile")).toMatch(new RegExp(`mkdir -p ${dir} && chown node:node ${dir}`));
  });

  it("publishes the port the API listens on", () => {
    const api = service("api");
    const port = environment(api).PORT;
    expect(port).toBe("3000");
    const targets = (api.ports ?? []).map((p) =>
      typeof p === "string" ? p.split(":").at(-1) : String(p.target),
    );
    expect(targets).toContain(port);
  });

  it("runs files the build emits: dist/<path>.js from <path>.ts in tsconfig.build.json", () => {
    const build = JSON.parse(read("tsconfig.build.json")) as { include: string[] };
    const commands = {
      api: argv(service("api").command),
      worker: argv(service("worker").command),
      "Dockerfile CMD": dockerfileCmd(),
    };
    expect(commands.api).toContain("dist/api/server.js");
    expect(commands.worker).toContain("dist/workers/main.js");
    for (const [name, args] of Object.entries(commands)) {
      expect(args[0], name).toBe("node");
      const entry = args.find((a) => /^dist\/.+\.js$/.test(a));
      expect(entry, `${name} runs a file under dist/`).toBeDefined();
      const source = (entry ?? "").replace(/^dist\//, "").replace(/\.js$/, ".ts");
      expect(existsSync(join(ROOT, source)), `${name}: ${source} exists`).toBe(true);
      expect(build.include, `${name}: ${source} is compiled`).toContain(source.split("/")[0]);
    }
  });
});

// ---- Dockerfile ---------------------------------------------------------------------------

interface Stage {
  from: string;
  name: string | undefined;
  lines: string[];
}

/** Instructions (continuation lines joined, comments dropped), grouped by stage. */
function dockerfileStages(): Stage[] {
  const instructions = read("Dockerfile")
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const stages: Stage[] = [];
  for (const line of instructions) {
    const from = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) stages.push({ from: from[1] ?? "", name: from[2]?.toLowerCase(), lines: [] });
    else stages.at(-1)?.lines.push(line);
  }
  return stages;
}

function dockerfileCmd(): string[] {
  const cmd = dockerfileStages()
    .at(-1)
    ?.lines.filter((l) => /^CMD\s/i.test(l))
    .at(-1);
  return cmd ? (JSON.parse(cmd.replace(/^CMD\s+/i, "")) as string[]) : [];
}

describe("Dockerfile", () => {
  const stages = dockerfileStages();
  const runtime = stages.at(-1);
  const runtimeLines = runtime?.lines ?? [];

  it("builds in stages: deps, build, and a runtime on node:20-slim", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const names = stages.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(["deps", "build", "runtime"]));
    expect(runtime?.name).toBe("runtime");
    // Follow FROM <stage> back to the image the runtime stands on.
    let base = runtime?.from;
    for (let stage = stages.find((s) => s.name === base); stage; stage = stages.find((s) => s.name === base))
      base = stage.from;
    expect(base).toBe("node:20-slim");
  });

  it("runs the final stage as a non-root user", () => {
    const users = runtimeLines.filter((l) => /^USER\s/i.test(l)).map((l) => l.split(/\s+/)[1]);
    expect(users.length).toBeGreaterThan(0);
    expect(["root", "0", "0:0", "root:root"]).not.toContain(users.at(-1));
  });

  it("puts the migrations where dist/db/migrate.js looks for them, and ships dist/", () => {
    // `npm run build` copies them (so a local build runs too); the image checks they arrived.
    const pkg = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toMatch(/db\/migrations.*dist\/db\/migrations/);
    const text = stages.flatMap((s) => s.lines).join("\n");
    expect(text).toMatch(/npm run build/);
    expect(text).toMatch(/test -f dist\/db\/migrations\/meta\/_journal\.json/);
    expect(runtimeLines.some((l) => /^COPY\s+--from=build\s+\S*dist\s/i.test(l))).toBe(true);
  });

  it("installs production dependencies only, under the allowScripts policy", () => {
    expect(runtimeLines).toContainEqual(expect.stringMatching(/^ENV\s+NODE_ENV=production/));
    const installs = stages.flatMap((s) => s.lines).filter((l) => /npm ci\b/.test(l));
    expect(installs.length).toBeGreaterThanOrEqual(2);
    for (const l of installs) expect(l).toContain("--strict-allow-scripts");
    expect(runtimeLines.some((l) => /npm ci\b.*--omit=dev/.test(l))).toBe(true);
    // allowScripts is read by npm 11.16 and later; the npm that node:20 ships ignores it.
    const [major = 0, minor = 0] = (/(?:NPM_VERSION=|npm@)(\d+)\.(\d+)/.exec(read("Dockerfile")) ?? [])
      .slice(1)
      .map(Number);
    expect(major * 1000 + minor).toBeGreaterThanOrEqual(11_016);
  });

  it("exposes the API port and runs the API by default", () => {
    expect(runtimeLines).toContain("EXPOSE 3000");
    expect(dockerfileCmd()).toEqual(["node", "dist/api/server.js"]);
  });

  it("keeps node_modules, dist, .data and .git out of the build context", () => {
    const ignored = read(".dockerignore")
      .split(/\r?\n/)
      .map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(["node_modules", "dist", ".data", ".git"]));
  });
});
