// The process tier starts compiled JavaScript with plain `node`, as production does, not
// TypeScript through a loader (which compiled every module again in every child). Once per run
// it compiles tsconfig.test-build.json into dist-test/<pid>/, with the migrations beside
// db/migrate.js as `npm run build` puts them. Type errors are `npm run typecheck`'s to report:
// --noCheck emits the same JavaScript in a fraction of the time.
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export default function setup(project: TestProject) {
  const outDir = join(ROOT, "dist-test", String(process.pid));
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  rmSync(outDir, { recursive: true, force: true });
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.test-build.json", "--noCheck", "--outDir", outDir], {
    cwd: ROOT,
    stdio: "inherit",
  });
  cpSync(join(ROOT, "db/migrations"), join(outDir, "db/migrations"), { recursive: true });
  project.provide("buildDir", outDir);
  return () => rmSync(outDir, { recursive: true, force: true });
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Set in the process tier only. */
    buildDir?: string;
  }
}
