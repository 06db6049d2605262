// Unguessable identifiers: 128 random bits, URL-safe.
import { randomBytes } from "node:crypto";

// Drawn from a pool: one randomBytes call per 256 ids instead of one per id (every request takes
// two: its request id and its job id). Each random byte is used once. The one module-level state
// in the platform, on purpose: a buffer of entropy (as Node keeps for randomUUID), nothing a caller
// could observe or would want per app.
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let offset = 0;

export const randomId = (prefix = ""): string => {
  if (offset + 16 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  const id = pool.toString("base64url", offset, offset + 16);
  offset += 16;
  return `${prefix}${id}`;
};
