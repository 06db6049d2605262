// Migrates a template database once per run and tier; every test file clones it (CREATE
// DATABASE … TEMPLATE …), so tests exercise the committed migrations and never share rows.

import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { migrateDatabase } from "../db/migrate.js";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { databaseUrl } from "./helpers/database.js";

export default async function setup(project: TestProject) {
  // A template per tier: the tiers set up on their own (one may run alone) but in one process.
  const template = `conveyor_test_template_${process.pid}_${project.name}`;
  const env = loadTestEnv();
  const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${template} with (force)`);
  await admin.unsafe(`create database ${template}`);
  await migrateDatabase(
    databaseUrl(env.TEST_PG_URL, template),
    createLogger({ level: "warn", name: "test-setup" }),
  );
  project.provide("templateDb", template);
  return async () => {
    await admin.unsafe(`drop database if exists ${template} with (force)`);
    await admin.end();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    templateDb: string;
  }
}
