// `npm run db:migrate`: applies migrations to DATABASE_URL and exits.
import { z } from "zod";
import { loadConfig } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { migrateDatabase } from "./migrate.js";

const config = loadConfig(z.object({ DATABASE_URL: z.url(), LOG_LEVEL: z.string().default("info") }));
const logger = createLogger({ level: config.LOG_LEVEL, name: "migrate" });
await migrateDatabase(config.DATABASE_URL, logger);
logger.flush();
