// Applies the committed drizzle-kit migrations. Safe when several processes start at once:
// a Postgres advisory lock lets one migrate while the others wait, then find nothing to do.
import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import type { Logger } from "../lib/logger.js";

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));
// Any constant: "conveyor" as a bigint. Only migrations take it.
const MIGRATION_LOCK_KEY = 0x636f6e7665796f72n;

export async function migrateDatabase(url: string, logger: Logger): Promise<void> {
  const client = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const started = Date.now();
    // One connection (max: 1), so the lock and the migration share a session.
    await client`select pg_advisory_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    try {
      await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_FOLDER });
    } finally {
      await client`select pg_advisory_unlock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    }
    logger.info({ ms: Date.now() - started }, "database migrated");
  } finally {
    await client.end({ timeout: 5 });
  }
}
