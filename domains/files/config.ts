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
  // Chunk buffers of every transfer in one process (uploads, downloads, verifications): beyond it
  // a new transfer answers 503. Raised to one transfer's full read-ahead if set lower
  // (memoryBudgetBytes).
  FILE_MEMORY_BUDGET_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(256 * 1024 ** 2),
  // A download whose client takes no byte, or an upload whose client sends none, for this long ends.
  FILE_IDLE_TIMEOUT_MS: z.coerce.number().int().min(10).default(30_000),
  // Uploads and downloads at once per client address, counted in each API process (per replica).
  FILE_MAX_TRANSFERS_PER_CLIENT: z.coerce.number().int().min(1).default(8),
  // Bytes of file chunks the store may hold in all (0: no limit); counted in the store itself.
  FILE_STORE_MAX_BYTES: z.coerce.number().int().min(0).default(0),
};

export type FilesConfig = ConfigOf<typeof filesConfig>;

/**
 * The memory budget of a process's transfers: FILE_MEMORY_BUDGET_BYTES, but never less than one
 * transfer at full speed (its chunk being sent or filled plus FILE_PARALLELISM in flight).
 */
export const memoryBudgetBytes = (c: FilesConfig): number =>
  Math.max(c.FILE_MEMORY_BUDGET_BYTES, c.FILE_CHUNK_SIZE * (c.FILE_PARALLELISM + 1));

/** The file store's URL: FILE_STORE_URL, else the queues' Redis. */
export const fileStoreUrl = (c: { FILE_STORE_URL?: string | undefined; REDIS_URL: string }): string =>
  c.FILE_STORE_URL ?? c.REDIS_URL;
