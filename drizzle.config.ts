import { defineConfig } from "drizzle-kit";

// `npm run db:generate` diffs db/schema against the committed migrations; it needs no database.
export default defineConfig({
  dialect: "postgresql",
  schema: "./db/schema/index.ts",
  out: "./db/migrations",
  casing: "snake_case",
});
