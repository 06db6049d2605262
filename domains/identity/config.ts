// Settings of the identity domain (zod shapes; lib/config.ts reads the environment): the server
// keys that credentials and addresses rest under, token lifetimes, anonymous access and the
// per-role rate limits.
import { z } from "zod";
import { addressListConfig } from "../../lib/cidr.js";
import type { ConfigOf } from "../../lib/config.js";
import { decodeKey } from "../../lib/sealing.js";

const isKey = (v: string) => {
  try {
    return decodeKey(v).length === 32;
  } catch {
    return false;
  }
};
const serverKey = z.string().refine(isKey, "must be base64 of exactly 32 bytes (openssl rand -base64 32)");
const keyList = z
  .string()
  .transform((list) =>
    list
      .split(",")
      .map((k) => k.trim())
      .filter((k) => k !== ""),
  )
  .refine((keys) => keys.every(isKey), "each key must be base64 of exactly 32 bytes");

/** Where anonymous callers may go, when ANONYMOUS_ACCESS lets them (alert ingestion is apart). */
export const ANONYMOUS_AREAS = ["secrets", "files"] as const;
export type AnonymousArea = (typeof ANONYMOUS_AREAS)[number];

const perMinute = (fallback: number) => z.coerce.number().int().min(1).default(fallback);

export const identityConfig = {
  // HMAC-SHA-256 key that API keys are stored under. Changing it invalidates every key.
  API_KEY_HASH_KEY: serverKey.optional(),
  // AES-256-GCM key of account e-mail addresses (and, through a sub-key, their blind index).
  ACCOUNT_DATA_KEY: serverKey.optional(),
  // HS256 key that access tokens are signed with; JWT_VERIFY_KEYS_ACCEPTED: keys that still verify
  // (the previous signing key during a rotation, until the tokens it signed have expired).
  JWT_SIGNING_KEY: serverKey.optional(),
  JWT_VERIFY_KEYS_ACCEPTED: keyList.optional(),
  JWT_TTL_SECONDS: z.coerce.number().int().min(60).max(86_400).default(900),
  // Seconds a token's exp/nbf/iat may be off, for clocks that differ between servers.
  JWT_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(30),
  // How long a rotated key keeps working beside its successor, unless the rotation says otherwise.
  API_KEY_ROTATION_GRACE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 86_400)
    .default(86_400),
  // API keys remembered per API process (a revocation reaches every process over Redis at once;
  // the TTL bounds staleness when a revocation message was missed).
  API_KEY_CACHE_MAX: z.coerce.number().int().min(0).default(10_000),
  API_KEY_CACHE_TTL_SECONDS: z.coerce.number().int().min(1).max(3_600).default(60),
  // last_used_at is written at most this often per key (one batched UPDATE per process).
  API_KEY_LAST_USED_FLUSH_SECONDS: z.coerce.number().int().min(1).max(3_600).default(30),
  // Areas open to callers without credentials, comma-separated: secrets, files. They share one
  // anonymous tenant. Empty: none. The all-in-one start opens both unless this is set.
  ANONYMOUS_ACCESS: z
    .string()
    .transform((raw, ctx) => {
      const areas = raw
        .split(",")
        .map((a) => a.trim())
        .filter((a) => a !== "" && a !== "none");
      const unknown = areas.filter((a) => !(ANONYMOUS_AREAS as readonly string[]).includes(a));
      if (unknown.length > 0) {
        ctx.addIssue({
          code: "custom",
          message: `unknown area(s) ${unknown.join(", ")}; known: ${ANONYMOUS_AREAS.join(", ")}`,
        });
        return z.NEVER;
      }
      return areas as AnonymousArea[];
    })
    .optional(),
  // Addresses and CIDR blocks admin accounts may call from (any route); unset: anywhere.
  ADMIN_IP_ALLOWLIST: addressListConfig().optional(),
  // Failed authentications (a key or token that lets no one in) per caller address per minute,
  // before that address is refused with 429 for the rest of the minute.
  AUTH_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).default(30),
  // Requests per account per window, by role, and for the anonymous tenant (all anonymous callers
  // together). Past it: 429 with Retry-After and the RateLimit headers.
  RATE_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(3_600).default(60),
  RATE_LIMIT_ADMIN: perMinute(60_000),
  RATE_LIMIT_OPS: perMinute(60_000),
  RATE_LIMIT_QUANT: perMinute(6_000),
  RATE_LIMIT_CLIENT: perMinute(6_000),
  RATE_LIMIT_ANONYMOUS: perMinute(6_000),
};

export type IdentityConfig = ConfigOf<typeof identityConfig>;

/** What a process serving the API lacks to authenticate anyone. */
export function identityConfigIssues(c: Partial<IdentityConfig>): string[] {
  const missing = (["API_KEY_HASH_KEY", "ACCOUNT_DATA_KEY", "JWT_SIGNING_KEY"] as const).filter(
    (name) => c[name] === undefined,
  );
  return missing.map((name) => `${name}: required (base64 of 32 random bytes: openssl rand -base64 32)`);
}
