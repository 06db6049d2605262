// Settings of the files domain (zod shapes; lib/config.ts reads the environment): the in-memory
// file store, read by the API (streams) and the worker (verification).
import { z } from "zod";
import type { ConfigOf } from "../../lib/config.js";

export const filesConfig = {
  // Defaults to REDIS_URL: see fileStoreUrl().
  FILE_STORE_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  // One chunk is one Redis value, and a Redis value holds at most 512 MiB.
  FILE_CHUNK_SIZE: z.coerce
    .number()
    .int()
    .min(1024)
    .max(512 * 1024 * 1024)
    .default(10_000_000),
  FILE_PARALLELISM: z.coerce.number().int().min(1).max(64).default(4),
  FILE_TTL_SECONDS: z.coerce.number().int().min(1).default(86_400),
  FILE_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(8 * 1024 ** 3),
};

export type FilesConfig = ConfigOf<typeof filesConfig>;

/** The file store's URL: FILE_STORE_URL, else the queues' Redis. */
export const fileStoreUrl = (c: { FILE_STORE_URL?: string | undefined; REDIS_URL: string }): string =>
  c.FILE_STORE_URL ?? c.REDIS_URL;
