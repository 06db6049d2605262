// A database of its own for each test file, cloned from the migrated template.
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { inject } from "vitest";
import { loadTestEnv } from "../../lib/config.js";

export const databaseUrl = (serverUrl: string, name: string): string => {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
};

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const env = loadTestEnv();
  const name = `conveyor_t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name} template ${inject("templateDb")}`);
  } finally {
    await admin.end();
  }
  return {
    url: databaseUrl(env.TEST_PG_URL, name),
    name,
    async drop() {
      const a = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}
