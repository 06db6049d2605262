// The test suite in three tiers, chosen by a file's name (docs/testing.md):
//   unit         *.unit.test.ts     no services: pure functions, files read from the repo
//   integration  *.test.ts          real Postgres and Redis, the app and workers in this process
//   process      *.process.test.ts  the project's entries as child processes (compiled first),
//                *.browser.test.ts  or a real browser
// `vitest run` runs them all at once; `--project <tier>` runs one.
import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

const UNIT = "**/*.unit.test.ts";
const PROCESS = ["**/*.process.test.ts", "**/*.browser.test.ts"];
const NEVER = ["node_modules/**", "dist/**", "dist-test/**", ".data/**"];

// What every tier shares. Forks, not threads: tests send signals and change the cwd.
const shared = {
  setupFiles: ["./test/setup-each-file.ts"],
  testTimeout: 30_000,
  hookTimeout: 60_000,
  pool: "forks" as const,
};

export default defineConfig({
  test: {
    // One file per core: the process tier's children and the services share the same cores.
    maxWorkers: availableParallelism(),
    projects: [
      { test: { ...shared, name: "unit", include: [UNIT], exclude: NEVER } },
      {
        test: {
          ...shared,
          name: "integration",
          include: ["**/*.test.ts"],
          exclude: [...NEVER, UNIT, ...PROCESS],
          globalSetup: ["./test/global-setup.ts"],
        },
      },
      {
        test: {
          ...shared,
          name: "process",
          include: PROCESS,
          exclude: NEVER,
          globalSetup: ["./test/global-setup.ts", "./test/build-setup.ts"],
        },
      },
    ],
  },
});
