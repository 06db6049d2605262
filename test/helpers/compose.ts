// docker-compose.yml as the tests read it: the parsed file, a service by name, and commands as
// argument lists. Shared by the shape checks (unit) and the health checks run for real (process).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const read = (file: string) => readFileSync(join(ROOT, file), "utf8");

interface Healthcheck {
  test?: string | string[];
  disable?: boolean;
}
export interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: Healthcheck;
  depends_on?: string[] | Record<string, { condition?: string }>;
  deploy?: { replicas?: number };
  stop_grace_period?: string;
  volumes?: (string | { source?: string; target?: string })[];
  ports?: (string | { target?: number; published?: string | number })[];
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

// `merge: true`: the file shares the app settings through YAML merge keys (<<), as Compose does.
export const compose = parse(read("docker-compose.yml"), { merge: true }) as Compose;

export const service = (name: string): Service => {
  const s = compose.services[name];
  if (!s) throw new Error(`docker-compose.yml has no service ${name}`);
  return s;
};

/** A command as an argument list; the string form is split the way a shell would, roughly. */
export const argv = (command: string | string[] | undefined): string[] =>
  Array.isArray(command)
    ? command.map(String)
    : [...(command ?? "").matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? "");
