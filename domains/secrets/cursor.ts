// Retrieval cursors: where the next page starts, sealed so that the client never sees an id, and
// bound to the tenant, the client's key and the id pattern, so a cursor serves no other retrieval.
import { createHmac } from "node:crypto";
import { CryptoError, open, type SealKeyRing, seal } from "../../lib/sealing.js";

/** What a cursor is for: one tenant's retrieval of one pattern. */
export interface CursorScope {
  tenant: string;
  pattern: string;
}

/**
 * The sealing context: an HMAC of the tenant and pattern under the master key. The master key,
 * rather than the client's key itself, so that a cursor (even with JOB_SEAL_KEY at hand) tests a
 * guessed key no faster than scrypt does.
 */
const cursorContext = (master: Buffer, scope: CursorScope) =>
  `conveyor/secrets/cursor/v2/${createHmac("sha256", master)
    .update(`conveyor/secrets/cursor/v2\n${scope.tenant}\n${scope.pattern}`, "utf8")
    .digest("base64url")}`;

/** An opaque token for "after `lastId`", valid only with the same master key, tenant and pattern. */
export const sealCursor = (
  cursorKeys: SealKeyRing,
  master: Buffer,
  scope: CursorScope,
  lastId: string,
): string => seal(cursorKeys, lastId, cursorContext(master, scope));

/** The id a cursor stands for; undefined when it was not given out for this key, tenant and pattern. */
export function openCursor(
  cursorKeys: SealKeyRing,
  master: Buffer,
  scope: CursorScope,
  cursor: string,
): string | undefined {
  try {
    return open(cursorKeys, cursor, cursorContext(master, scope)).toString("utf8");
  } catch (err) {
    if (err instanceof CryptoError) return undefined;
    throw err;
  }
}
