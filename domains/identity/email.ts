// E-mail addresses at rest: sealed with AES-256-GCM under ACCOUNT_DATA_KEY (lib/sealing, bound to
// the account id, so a sealed address copied to another row does not open), and a blind index
// beside it: an HMAC of the normalised address under a sub-key, so uniqueness and "the account
// with this address" still work without an address in clear.
import { createHmac } from "node:crypto";
import { createSealKeyRing, open, type SealKeyRing, seal, subKey } from "../../lib/sealing.js";

export interface EmailKeys {
  ring: SealKeyRing;
  indexKey: Buffer;
}

export function createEmailKeys(dataKey: Buffer): EmailKeys {
  return {
    ring: createSealKeyRing(subKey(dataKey, "conveyor/identity/email/seal/v1")),
    indexKey: subKey(dataKey, "conveyor/identity/email/index/v1"),
  };
}

/** One spelling per mailbox for the index: trimmed, lower case (as every provider treats them). */
export const normaliseEmail = (email: string) => email.trim().toLowerCase();

const context = (accountId: string) => `conveyor/identity/account-email/${accountId}`;

export const sealEmail = (keys: EmailKeys, accountId: string, email: string): string =>
  seal(keys.ring, email, context(accountId));

export const openEmail = (keys: EmailKeys, accountId: string, sealed: string): string =>
  open(keys.ring, sealed, context(accountId)).toString("utf8");

export const emailIndex = (keys: EmailKeys, email: string): Buffer =>
  createHmac("sha256", keys.indexKey).update(normaliseEmail(email)).digest();
