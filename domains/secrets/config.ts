// Settings of the secrets domain (zod shapes; lib/config.ts reads the environment). The API seals
// stores and decrypts retrievals; the `encryption` worker opens the seals and encrypts.
import { z } from "zod";
import type { ConfigOf } from "../../lib/config.js";
import { decodeKey } from "../../lib/sealing.js";

const isSealKey = (v: string) => {
  try {
    return decodeKey(v).length === 32;
  } catch {
    return false;
  }
};

export const secretsConfig = {
  // base64 of 32 random bytes (`openssl rand -base64 32`): seals job payloads that carry secrets.
  // Optional in the schemas so tools and tests parse configs without it; required of every
  // process that serves secrets (secretsConfigIssues).
  JOB_SEAL_KEY: z.string().refine(isSealKey, "must be base64 of exactly 32 bytes").optional(),
  // Keys that open sealed payloads but seal nothing, comma-separated: during a rotation, the next
  // key before it seals anywhere, then the previous one until the jobs sealed under it are gone.
  JOB_SEAL_KEYS_ACCEPTED: z
    .string()
    .transform((list) =>
      list
        .split(",")
        .map((k) => k.trim())
        .filter((k) => k !== ""),
    )
    .refine((keys) => keys.every(isSealKey), "each key must be base64 of exactly 32 bytes")
    .optional(),
  // The deployment's scrypt salt for clients' keys. Set it once: records stored under another
  // salt no longer open. Required in production; a fixed public salt is used elsewhere.
  SECRETS_KDF_SALT: z.string().min(16, "at least 16 characters").optional(),
  SECRETS_MAX_VALUE_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(1024 * 1024),
  SECRETS_MAX_MATCHES: z.coerce.number().int().min(1).max(100_000).default(1_000),
  // Failed retrievals per caller address (whatever the pattern) per window, before 429.
  SECRETS_FAILED_DECRYPT_LIMIT: z.coerce.number().int().min(1).default(20),
  SECRETS_FAILED_DECRYPT_WINDOW_SECONDS: z.coerce.number().int().min(1).default(60),
  // scrypt is the one costly step a caller can trigger: new (uncached) client keys per address per
  // minute, and derivations at once in this process (libuv has 4 threads unless UV_THREADPOOL_SIZE
  // says otherwise; the rest stay free for file and DNS work), with a bounded wait line beyond them.
  SECRETS_KDF_PER_ADDRESS_PER_MINUTE: z.coerce.number().int().min(1).default(60),
  SECRETS_KDF_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  SECRETS_KDF_QUEUE_MAX: z.coerce.number().int().min(0).max(10_000).default(32),
  // Master keys derived from clients' keys, kept in memory (0 disables the cache).
  SECRETS_KEY_CACHE_MAX: z.coerce.number().int().min(0).default(1_000),
  SECRETS_KEY_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).max(3_600).default(60),
};

export type SecretsConfig = ConfigOf<typeof secretsConfig> & {
  NODE_ENV: string;
};

/** What a process serving secrets lacks: JOB_SEAL_KEY, and in production SECRETS_KDF_SALT. */
export function secretsConfigIssues(c: {
  NODE_ENV: string;
  JOB_SEAL_KEY?: string | undefined;
  SECRETS_KDF_SALT?: string | undefined;
}): string[] {
  const issues: string[] = [];
  if (c.JOB_SEAL_KEY === undefined)
    issues.push("JOB_SEAL_KEY: required (base64 of 32 random bytes: openssl rand -base64 32)");
  if (c.NODE_ENV === "production" && c.SECRETS_KDF_SALT === undefined)
    issues.push("SECRETS_KDF_SALT: required in production (16+ random characters, never changed)");
  return issues;
}
