// Sealing: AES-256-GCM under server keys from config (a ring: one seals, several open), for data
// that must pass through Redis (job payloads) without resting there in clear; the GCM primitives
// the domains' formats build on.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";

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

/** Version byte of a sealed payload without a key id (still opened; no longer written). */
export const SEAL_V1 = 0x01;
/** Version byte of a sealed payload that names its key: AES-256-GCM, key id, 12-byte nonce, 16-byte tag. */
export const SEAL_V2 = 0x02;
export const SEAL_KEY_ID_BYTES = 8;

/** A seal key and its id: the first 8 bytes of HMAC-SHA256(key, a fixed label), safe to show. */
export interface SealKey {
  id: Buffer;
  key: Buffer;
}

/**
 * The keys of a process: one seals, all open. A rotation adds a key as accepted everywhere, then
 * makes it the sealing key, then drops the old one once no job sealed under it is left.
 */
export interface SealKeyRing {
  sealing: SealKey;
  /** Every key a sealed payload may open with, the sealing key first. */
  keys: readonly SealKey[];
}

/** The id that blobs sealed under `key` carry (see SealKey). */
export const sealKeyId = (key: Buffer): Buffer =>
  createHmac("sha256", key).update("conveyor/jobs/seal-key-id/v1").digest().subarray(0, SEAL_KEY_ID_BYTES);

/** The ring of `sealing` (decoded JOB_SEAL_KEY) and `accepted` (keys that only open). */
export function createSealKeyRing(sealing: Buffer, accepted: readonly Buffer[] = []): SealKeyRing {
  const keys: SealKey[] = [];
  for (const key of [sealing, ...accepted]) {
    const id = sealKeyId(key);
    const same = keys.find((k) => k.id.equals(id));
    if (same?.key.equals(key)) continue;
    // 2^-64 for two random keys: a clash means a configuration no one meant.
    if (same) throw new CryptoError(`two seal keys share the key id ${id.toString("hex")}`);
    keys.push({ id, key });
  }
  return { sealing: keys[0] as SealKey, keys };
}

/**
 * Seals `plaintext` under the ring's sealing key. `context` is bound as additional data, so a
 * sealed blob moved into another job (another context) does not open; so are the version and
 * the key id. Layout, base64: version 0x02 (1) || key id (8) || nonce (12) || ciphertext || tag (16).
 */
export function seal(ring: SealKeyRing, plaintext: string | Buffer, context: string): string {
  const header = Buffer.concat([Buffer.of(SEAL_V2), ring.sealing.id]);
  const data = typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext;
  const { nonce, body } = gcmEncrypt(
    ring.sealing.key,
    data,
    Buffer.concat([header, Buffer.from(context, "utf8")]),
  );
  return Buffer.concat([header, nonce, body]).toString("base64");
}

/**
 * Opens what seal() produced, under the key its id names, with the same context; a version 0x01
 * payload (no key id: version (1) || nonce (12) || ciphertext || tag (16)) under whichever key of
 * the ring opens it. Throws a CryptoError otherwise, naming a key id the ring lacks.
 */
export function open(ring: SealKeyRing, sealed: string, context: string): Buffer {
  const raw = Buffer.from(sealed, "base64");
  const version = raw[0];
  if (version !== SEAL_V1 && version !== SEAL_V2) throw new CryptoError(`unknown seal version ${version}`);
  const headerBytes = version === SEAL_V2 ? 1 + SEAL_KEY_ID_BYTES : 1;
  if (raw.length < headerBytes + GCM_NONCE_BYTES + GCM_TAG_BYTES)
    throw new CryptoError("sealed payload is truncated");
  const header = raw.subarray(0, headerBytes);
  const nonce = raw.subarray(headerBytes, headerBytes + GCM_NONCE_BYTES);
  const body = raw.subarray(headerBytes + GCM_NONCE_BYTES);
  const aad = Buffer.concat([header, Buffer.from(context, "utf8")]);
  if (version === SEAL_V1) return openWithAnyKey(ring, nonce, body, aad);
  const id = header.subarray(1);
  const named = ring.keys.find((k) => k.id.equals(id));
  if (!named)
    throw new CryptoError(`sealed under key id ${id.toString("hex")}, which is not configured here`);
  return gcmDecrypt(named.key, nonce, body, aad);
}

function openWithAnyKey(ring: SealKeyRing, nonce: Buffer, body: Buffer, aad: Buffer): Buffer {
  let failure: unknown;
  for (const { key } of ring.keys) {
    try {
      return gcmDecrypt(key, nonce, body, aad);
    } catch (err) {
      failure = err;
    }
  }
  throw failure;
}
