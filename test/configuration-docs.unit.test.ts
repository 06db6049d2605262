// docs/configuration.md is the list of every environment variable: this keeps it complete as
// domains add settings (a variable in a schema that the page does not name fails here).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { devStartConfigSchema } from "../dev/config.js";
import { allInOneConfigSchema, apiConfigSchema, workerConfigSchema } from "../domains/config.js";
import { testEnvSchema } from "../lib/config.js";

const page = readFileSync(new URL("../docs/configuration.md", import.meta.url), "utf8");

describe("docs/configuration.md", () => {
  it("names every variable of every process's schema", () => {
    const schemas = [
      apiConfigSchema,
      workerConfigSchema,
      allInOneConfigSchema,
      devStartConfigSchema,
      testEnvSchema,
    ];
    const names = new Set(schemas.flatMap((schema) => Object.keys(schema.shape)));
    const missing = [...names].filter((name) => !page.includes(`\`${name}\``));
    expect(missing).toEqual([]);
  });
});
