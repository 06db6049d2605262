// Migrates a template database once per run; every test file clones it (CREATE DATABASE …
// TEMPLATE …), so tests exercise the committed migrations and never share rows.

import postgres from "postgres";
import type { TestProject } from "vitest/node";
import { migrateDatabase } from "../db/migrate.js";
import { loadTestEnv } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { databaseUrl } from "./helpers/database.js";

export const TEMPLATE_DB = `conveyor_test_template_${process.pid}`;

export default async function setup(project: TestProject) {
  const env = loadTestEnv();
  const admin = postgres(env.TEST_PG_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${TEMPLATE_DB} with (force)`);
  await admin.unsafe(`create database ${TEMPLATE_DB}`);
  await migrateDatabase(
    databaseUrl(env.TEST_PG_URL, TEMPLATE_DB),
    createLogger({ level: "warn", name: "test-setup" }),
  );
  project.provide("templateDb", TEMPLATE_DB);
  return async () => {
    await admin.unsafe(`drop database if exists ${TEMPLATE_DB} with (force)`);
    await admin.end();
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    templateDb: string;
  }
}
