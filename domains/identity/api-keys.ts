// API keys: `cvy_` + 32 base62 characters of randomness (190 bits) + a 6-character CRC-32
// checksum, as GitHub's tokens are built: the prefix lets secret scanners recognise a leaked key,
// the checksum lets the API refuse a mistyped or made-up key without a lookup. A key is shown once
// and kept only as an HMAC-SHA-256 under API_KEY_HASH_KEY: a stolen table opens nothing, and
// without the server key no one can even test guesses against it.
import { createHmac, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

export const API_KEY_PREFIX = "cvy_";
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS = 32;
const CHECKSUM_CHARS = 6;
/** What is kept and shown of a key: the prefix and 8 characters, enough to tell keys apart. */
const DISPLAY_CHARS = API_KEY_PREFIX.length + 8;
const API_KEY_SHAPE = new RegExp(`^${API_KEY_PREFIX}[0-9A-Za-z]{${RANDOM_CHARS + CHECKSUM_CHARS}}$`);

function base62(value: number, width: number): string {
  let out = "";
  for (let v = value; out.length < width; v = Math.floor(v / 62)) out = BASE62[v % 62] + out;
  return out;
}

/** Random base62 characters without modulo bias: bytes ≥ 248 (= 4 × 62) are drawn again. */
function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte >= 248) continue;
      out += BASE62[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

const checksum = (body: string) => base62(crc32(body), CHECKSUM_CHARS);

export function generateApiKey(): string {
  const body = API_KEY_PREFIX + randomBase62(RANDOM_CHARS);
  return body + checksum(body);
}

/** True for a string shaped like one of our keys whose checksum holds (no lookup). */
export function isWellFormedApiKey(key: string): boolean {
  if (!API_KEY_SHAPE.test(key)) return false;
  const body = key.slice(0, -CHECKSUM_CHARS);
  return checksum(body) === key.slice(-CHECKSUM_CHARS);
}

export const looksLikeApiKey = (credential: string) => credential.startsWith(API_KEY_PREFIX);

/** The part of a key that is kept and shown (`cvy_` and 8 characters). */
export const apiKeyDisplayPrefix = (key: string) => key.slice(0, DISPLAY_CHARS);

/** The HMAC a key is stored and looked up by. */
export const hashApiKey = (hashKey: Buffer, key: string): Buffer =>
  createHmac("sha256", hashKey).update(key).digest();
