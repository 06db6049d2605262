// Postgres clients. drizzle rewrites the serializers of the postgres.js client it is given,
// so it gets a client of its own; bulk writes use the raw client (multi-row inserts over
// unnest arrays are several times faster than drizzle's batched insert).
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema/index.js";

export type Sql = postgres.Sql;
export type Db = PostgresJsDatabase<typeof schema>;

export interface Database {
  /** Raw postgres.js: bulk writes and hand-written SQL. */
  sql: Sql;
  /** drizzle over its own postgres.js client: typed queries. */
  db: Db;
  close(timeoutSeconds?: number): Promise<void>;
}

export function createDatabase(url: string, opts: { max?: number; appName?: string } = {}): Database {
  const common = {
    max: opts.max ?? 10,
    idle_timeout: 30,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: opts.appName ?? "conveyor" },
  } as const;
  const sql = postgres(url, common);
  const drizzleClient = postgres(url, { ...common, max: Math.max(2, Math.ceil((opts.max ?? 10) / 2)) });
  const db = drizzle(drizzleClient, { schema, casing: "snake_case" });
  return {
    sql,
    db,
    async close(timeout = 5) {
      await Promise.allSettled([sql.end({ timeout }), drizzleClient.end({ timeout })]);
    },
  };
}
