// The secrets record format (scrypt master key → HKDF data key → AES-256-GCM), with a bounded,
// short-lived cache of master keys so many records cost one slow derivation.
import { createHmac, hkdfSync, randomBytes, scrypt } from "node:crypto";
import {
  CryptoError,
  GCM_NONCE_BYTES,
  GCM_TAG_BYTES,
  gcmDecrypt,
  gcmEncrypt,
  KEY_BYTES,
} from "../../lib/sealing.js";

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
  /** Whether `get` would answer without deriving (a derivation in progress counts: it is shared). */
  has(clientKey: string): boolean;
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
  const enabled = opts.max > 0 && opts.ttlMs > 0;
  const lookupId = (clientKey: string) =>
    createHmac("sha256", opts.lookupKey).update(clientKey, "utf8").digest("base64");
  return {
    get(clientKey, derive) {
      if (!enabled) return derive(clientKey);
      const id = lookupId(clientKey);
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
    has(clientKey) {
      return enabled && entries.has(lookupId(clientKey));
    },
    get size() {
      return entries.size;
    },
    clear() {
      for (const id of [...entries.keys()]) drop(id);
    },
  };
}
