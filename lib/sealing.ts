// Sealing: AES-256-GCM under a server key from config, for data that must pass through Redis
// (job payloads) without resting there in clear; the GCM primitives the domains' formats build on.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

export const GCM_NONCE_BYTES = 12;
export const GCM_TAG_BYTES = 16;
export const KEY_BYTES = 32;

/** A failure to open a sealed payload or a record: wrong key, tampering, or an unknown version. */
export class CryptoError extends Error {
  override readonly name = "CryptoError";
}

/** Decodes a base64 key of exactly 32 bytes (JOB_SEAL_KEY); throws a CryptoError otherwise. */
export function decodeKey(base64: string): Buffer {
  const key = Buffer.from(base64, "base64");
  // Buffer.from ignores stray characters, so round-trip to reject anything that is not base64.
  if (key.length !== KEY_BYTES || key.toString("base64") !== base64.replace(/\s/g, ""))
    throw new CryptoError("key must be 32 bytes, base64-encoded");
  return key;
}

/** A fresh random 32-byte key, base64 (what the dev start uses when JOB_SEAL_KEY is unset). */
export const generateKey = (): string => randomBytes(KEY_BYTES).toString("base64");

/** A sub-key for one purpose, so one configured key never serves two algorithms directly. */
export const subKey = (key: Buffer, purpose: string): Buffer =>
  Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), purpose, KEY_BYTES));

/** AES-256-GCM with a random nonce; body = ciphertext || tag. */
export function gcmEncrypt(key: Buffer, plaintext: Buffer, aad: Buffer): { nonce: Buffer; body: Buffer } {
  const nonce = randomBytes(GCM_NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { nonce, body };
}

/** Opens what gcmEncrypt produced; a CryptoError when the key, the data or the AAD differ. */
export function gcmDecrypt(key: Buffer, nonce: Buffer, body: Buffer, aad: Buffer): Buffer {
  if (body.length < GCM_TAG_BYTES) throw new CryptoError("ciphertext is truncated");
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(body.subarray(body.length - GCM_TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(body.subarray(0, body.length - GCM_TAG_BYTES)), decipher.final()]);
  } catch {
    // Node's message ("Unsupported state or unable to authenticate data") says nothing useful.
    throw new CryptoError("authentication failed: wrong key, or the data was altered or moved");
  }
}

// ---- Sealed job payloads ---------------------------------------------------------------------

/** Version byte of a sealed payload: AES-256-GCM, 12-byte nonce, 16-byte tag. */
export const SEAL_V1 = 0x01;

/**
 * Seals `plaintext` under `key` (the decoded JOB_SEAL_KEY). `context` is bound as additional
 * data, so a sealed blob moved into another job (another context) does not open.
 * Layout, base64: version (1) || nonce (12) || ciphertext || tag (16).
 */
export function seal(key: Buffer, plaintext: string | Buffer, context: string): string {
  const version = Buffer.of(SEAL_V1);
  const data = typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext;
  const { nonce, body } = gcmEncrypt(key, data, Buffer.concat([version, Buffer.from(context, "utf8")]));
  return Buffer.concat([version, nonce, body]).toString("base64");
}

/** Opens what seal() produced with the same key and context; throws a CryptoError otherwise. */
export function open(key: Buffer, sealed: string, context: string): Buffer {
  const raw = Buffer.from(sealed, "base64");
  if (raw.length < 1 + GCM_NONCE_BYTES + GCM_TAG_BYTES) throw new CryptoError("sealed payload is truncated");
  if (raw[0] !== SEAL_V1) throw new CryptoError(`unknown seal version ${raw[0]}`);
  const nonce = raw.subarray(1, 1 + GCM_NONCE_BYTES);
  const aad = Buffer.concat([raw.subarray(0, 1), Buffer.from(context, "utf8")]);
  return gcmDecrypt(key, nonce, raw.subarray(1 + GCM_NONCE_BYTES), aad);
}
