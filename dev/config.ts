// `npm start` (dev/start.ts) reads these before the all-in-one config: where to look for
// Postgres and Redis when DATABASE_URL / REDIS_URL are unset (nothing answering there: it starts
// its own), and where the servers it starts keep their data (relative paths: from the repo root).
import { z } from "zod";
import { commonConfig, loadConfig } from "../lib/config.js";

export const devStartConfigSchema = z.object({
  DATABASE_URL: commonConfig.DATABASE_URL.optional(),
  REDIS_URL: commonConfig.REDIS_URL.optional(),
  DEV_POSTGRES_URL: z
    .url({ protocol: /^postgres(ql)?$/ })
    .default("postgres://postgres@127.0.0.1:5432/conveyor"),
  DEV_REDIS_URL: z.url({ protocol: /^rediss?$/ }).default("redis://127.0.0.1:6379"),
  DEV_DATA_DIR: z.string().min(1).default(".data"),
});
export type DevStartConfig = z.infer<typeof devStartConfigSchema>;
export const loadDevStartConfig = (): DevStartConfig => loadConfig(devStartConfigSchema);
