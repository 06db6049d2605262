// The keys of the secrets domain, built once per process from config: the JOB_SEAL_KEY that
// seals store jobs, a sub-key of it for retrieval cursors, and the master keys derived from
// clients' keys (through a bounded cache).
import { decodeKey, subKey } from "../../lib/sealing.js";
import type { SecretsConfig as SecretsSettings } from "./config.js";
import { createKeyCache, deriveMasterKey } from "./record.js";

/**
 * Used only outside production (where SECRETS_KDF_SALT is required): a fixed salt
 * keeps a developer's records readable across restarts, at the price of being public.
 */
export const DEV_SECRETS_KDF_SALT = "conveyor/secrets/dev-kdf-salt/v1";

type KeysConfig = Pick<
  SecretsSettings,
  "JOB_SEAL_KEY" | "SECRETS_KDF_SALT" | "SECRETS_KEY_CACHE_MAX" | "SECRETS_KEY_CACHE_TTL_SECONDS"
>;

/** Runs a derivation that has to happen (a cache miss): where a caller bounds or counts them. */
export type RunDerivation = (derive: () => Promise<Buffer>) => Promise<Buffer>;

export interface SecretsKeys {
  /** The decoded JOB_SEAL_KEY: seals `secrets.store` payloads (API) and opens them (worker). */
  sealKey: Buffer;
  /** Seals retrieval cursors: a sub-key of JOB_SEAL_KEY that serves nothing else. */
  cursorKey: Buffer;
  /** scrypt(client key, deployment salt), at most once per key per TTL in this process. */
  masterKey(clientKey: string, run?: RunDerivation): Promise<Buffer>;
  /** Whether masterKey would answer without deriving. */
  isCached(clientKey: string): boolean;
  clear(): void;
}

export function createSecretsKeys(config: KeysConfig): SecretsKeys {
  // lib/config.ts makes every process that serves secrets set it; only hand-built configs lack it.
  if (config.JOB_SEAL_KEY === undefined) throw new Error("JOB_SEAL_KEY is not configured");
  const sealKey = decodeKey(config.JOB_SEAL_KEY);
  const salt = Buffer.from(config.SECRETS_KDF_SALT ?? DEV_SECRETS_KDF_SALT, "utf8");
  const cache = createKeyCache({
    lookupKey: subKey(sealKey, "conveyor/secrets/key-cache-lookup/v1"),
    max: config.SECRETS_KEY_CACHE_MAX,
    ttlMs: config.SECRETS_KEY_CACHE_TTL_SECONDS * 1000,
  });
  return {
    sealKey,
    cursorKey: subKey(sealKey, "conveyor/secrets/retrieve-cursor/v1"),
    masterKey: (clientKey, run = (derive) => derive()) =>
      cache.get(clientKey, (k) => run(() => deriveMasterKey(k, salt))),
    isCached: (clientKey) => cache.has(clientKey),
    clear: () => cache.clear(),
  };
}
