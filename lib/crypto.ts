// Cryptography shared by the API and the workers: sealing job payloads under the server's
// JOB_SEAL_KEY, and the secrets record format (scrypt master key → HKDF data key → AES-256-GCM),
// with a bounded, short-lived cache of master keys so many records cost one slow derivation.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scrypt } from "node:crypto";

const GCM_NONCE_BYTES = 12;
const GCM_TAG_BYTES = 16;
const KEY_BYTES = 32;

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

function gcmEncrypt(key: Buffer, plaintext: Buffer, aad: Buffer): { nonce: Buffer; body: Buffer } {
  const nonce = randomBytes(GCM_NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { nonce, body };
}

function gcmDecrypt(key: Buffer, nonce: Buffer, body: Buffer, aad: Buffer): Buffer {
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

// ---- Secrets records -------------------------------------------------------------------------

/**
 * Record version 1: master = scrypt(client key, deployment salt, N=2^14, r=8, p=1, 32 bytes);
 * data key = HKDF-SHA256(master, record salt (16 random bytes), "conveyor/secrets/v1", 32);
 * AES-256-GCM with a random 12-byte nonce and AAD = version || record id.
 * Layout: version (1) || salt (16) || nonce (12) || ciphertext || tag (16).
 * A new version byte can change any of these without breaking records written before.
 */
export const RECORD_V1 = 0x01;
export const SCRYPT_V1 = { N: 16_384, r: 8, p: 1 } as const;
const RECORD_SALT_BYTES = 16;
const RECORD_INFO_V1 = "conveyor/secrets/v1";
const RECORD_HEADER_BYTES = 1 + RECORD_SALT_BYTES + GCM_NONCE_BYTES;

/**
 * The slow, memory-hard step (about 16 MiB and tens of milliseconds), done once per client key
 * rather than once per record. Asynchronous: it runs on libuv's thread pool, so the event loop
 * keeps serving other requests meanwhile.
 */
export function deriveMasterKey(clientKey: string, deploymentSalt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      Buffer.from(clientKey, "utf8"),
      deploymentSalt,
      KEY_BYTES,
      { ...SCRYPT_V1, maxmem: 64 * 1024 * 1024 },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

const recordAad = (version: number, id: string) =>
  Buffer.concat([Buffer.of(version), Buffer.from(id, "utf8")]);

const dataKeyV1 = (master: Buffer, salt: Buffer) =>
  Buffer.from(hkdfSync("sha256", master, salt, RECORD_INFO_V1, KEY_BYTES));

/** Encrypts one record's plaintext for `id` under a master key from deriveMasterKey. */
export function encryptRecord(master: Buffer, id: string, plaintext: Buffer): Buffer {
  const salt = randomBytes(RECORD_SALT_BYTES);
  const { nonce, body } = gcmEncrypt(dataKeyV1(master, salt), plaintext, recordAad(RECORD_V1, id));
  return Buffer.concat([Buffer.of(RECORD_V1), salt, nonce, body]);
}

/** Decrypts a record stored under `id`; throws a CryptoError when the key or the id does not match. */
export function decryptRecord(master: Buffer, id: string, record: Buffer): Buffer {
  if (record.length < RECORD_HEADER_BYTES + GCM_TAG_BYTES) throw new CryptoError("record is truncated");
  const version = record[0];
  if (version !== RECORD_V1) throw new CryptoError(`unknown record version ${version}`);
  const salt = record.subarray(1, 1 + RECORD_SALT_BYTES);
  const nonce = record.subarray(1 + RECORD_SALT_BYTES, RECORD_HEADER_BYTES);
  return gcmDecrypt(
    dataKeyV1(master, salt),
    nonce,
    record.subarray(RECORD_HEADER_BYTES),
    recordAad(RECORD_V1, id),
  );
}

// ---- Master-key cache ------------------------------------------------------------------------

export interface KeyCache {
  /** The master key for `clientKey`: from the cache, or derived once however many callers wait. */
  get(clientKey: string, derive: (clientKey: string) => Promise<Buffer>): Promise<Buffer>;
  readonly size: number;
  clear(): void;
}

/**
 * Master keys by HMAC-SHA256(lookupKey, client key): the client's key itself is never a map key
 * (so it is not kept beside the derived key). At most `max` entries, each dropped `ttlMs` after
 * it was derived (a timer, so an idle process forgets keys too). Concurrent lookups of one key
 * share one derivation. max or ttlMs of 0 disables caching.
 */
export function createKeyCache(opts: { lookupKey: Buffer; max: number; ttlMs: number }): KeyCache {
  const entries = new Map<string, { key: Promise<Buffer>; timer: NodeJS.Timeout }>();
  const drop = (id: string) => {
    const entry = entries.get(id);
    if (entry) clearTimeout(entry.timer);
    entries.delete(id);
  };
  return {
    get(clientKey, derive) {
      if (opts.max <= 0 || opts.ttlMs <= 0) return derive(clientKey);
      const id = createHmac("sha256", opts.lookupKey).update(clientKey, "utf8").digest("base64");
      const hit = entries.get(id);
      if (hit) return hit.key;
      // Map order is insertion order and every entry lives ttlMs, so the first is the oldest.
      while (entries.size >= opts.max) {
        const oldest = entries.keys().next().value;
        if (oldest === undefined) break;
        drop(oldest);
      }
      const key = derive(clientKey);
      const timer = setTimeout(() => entries.delete(id), opts.ttlMs);
      timer.unref();
      const entry = { key, timer };
      entries.set(id, entry);
      // A failed derivation must not be served to the next caller.
      key.catch(() => {
        if (entries.get(id) === entry) drop(id);
      });
      return key;
    },
    get size() {
      return entries.size;
    },
    clear() {
      for (const id of [...entries.keys()]) drop(id);
    },
  };
}
