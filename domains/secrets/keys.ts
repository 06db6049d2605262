// The keys of the secrets domain, built once per process from config: the seal key ring
// (JOB_SEAL_KEY seals store jobs; it and JOB_SEAL_KEYS_ACCEPTED open them), a sub-key of the
// sealing key for retrieval cursors, and the master keys derived from clients' keys (through a
// bounded cache).
import { createSealKeyRing, decodeKey, type SealKeyRing, subKey } from "../../lib/sealing.js";
import type { SecretsConfig as SecretsSettings } from "./config.js";
import { createKeyCache, deriveMasterKey } from "./record.js";

/**
 * Used only outside production (where SECRETS_KDF_SALT is required) when the salt is unset: a
 * fixed salt keeps records readable across restarts, at the price of being public. A process
 * that would use it says so at start (buildServices); `npm start` keeps a salt per install.
 */
export const DEV_SECRETS_KDF_SALT = "conveyor/secrets/dev-kdf-salt/v1";

/** True when this process's secrets would fall back to the public DEV_SECRETS_KDF_SALT. */
export const usesDevKdfSalt = (config: { NODE_ENV: string; SECRETS_KDF_SALT?: string | undefined }) =>
  config.SECRETS_KDF_SALT === undefined && config.NODE_ENV !== "production";

type KeysConfig = Pick<
  SecretsSettings,
  | "JOB_SEAL_KEY"
  | "JOB_SEAL_KEYS_ACCEPTED"
  | "SECRETS_KDF_SALT"
  | "SECRETS_KEY_CACHE_MAX"
  | "SECRETS_KEY_CACHE_TTL_SECONDS"
>;

/** Runs a derivation that has to happen (a cache miss): where a caller bounds or counts them. */
export type RunDerivation = (derive: () => Promise<Buffer>) => Promise<Buffer>;

export interface SecretsKeys {
  /** JOB_SEAL_KEY seals `secrets.store` payloads (API); it and JOB_SEAL_KEYS_ACCEPTED open them (worker). */
  sealKeys: SealKeyRing;
  /**
   * Seals retrieval cursors: a sub-key of JOB_SEAL_KEY that serves nothing else (cursors given out
   * before a JOB_SEAL_KEY rotation no longer open: the client starts its paging again).
   */
  cursorKeys: SealKeyRing;
  /**
   * scrypt(client key, deployment salt), at most once per tenant and key per TTL in this process.
   * Remembered per tenant: one tenant's use of a key neither speeds up nor spares another's
   * derivation, so timing tells no tenant what keys another has used.
   */
  masterKey(tenant: string, clientKey: string, run?: RunDerivation): Promise<Buffer>;
  /** Whether masterKey would answer without deriving. */
  isCached(tenant: string, clientKey: string): boolean;
  clear(): void;
}

/** The cache's key of a tenant's client key (the cache keeps only an HMAC of it). */
const cacheKey = (tenant: string, clientKey: string) => `${tenant}\u0000${clientKey}`;

export function createSecretsKeys(config: KeysConfig): SecretsKeys {
  // domains/config.ts (secretsConfigIssues) makes every process that serves secrets set it; only hand-built configs lack it.
  if (config.JOB_SEAL_KEY === undefined) throw new Error("JOB_SEAL_KEY is not configured");
  const sealKeys = createSealKeyRing(
    decodeKey(config.JOB_SEAL_KEY),
    (config.JOB_SEAL_KEYS_ACCEPTED ?? []).map(decodeKey),
  );
  const salt = Buffer.from(config.SECRETS_KDF_SALT ?? DEV_SECRETS_KDF_SALT, "utf8");
  const cache = createKeyCache({
    lookupKey: subKey(sealKeys.sealing.key, "conveyor/secrets/key-cache-lookup/v1"),
    max: config.SECRETS_KEY_CACHE_MAX,
    ttlMs: config.SECRETS_KEY_CACHE_TTL_SECONDS * 1000,
  });
  return {
    sealKeys,
    cursorKeys: createSealKeyRing(subKey(sealKeys.sealing.key, "conveyor/secrets/retrieve-cursor/v1")),
    masterKey: (tenant, clientKey, run = (derive) => derive()) =>
      cache.get(cacheKey(tenant, clientKey), () => run(() => deriveMasterKey(clientKey, salt))),
    isCached: (tenant, clientKey) => cache.has(cacheKey(tenant, clientKey)),
    clear: () => cache.clear(),
  };
}
