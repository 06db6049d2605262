// The secrets domain: an encrypted key-value store. A store is sealed by the API (the client's
// key and value never rest in clear in Redis) and written by the `encryption` worker, last write
// wins; a retrieval reads and decrypts in the API, one slow key derivation per request at most,
// under per-address limits, and tells a key nothing about the records it does not open.
import { createBatcher } from "../../lib/batcher.js";
import { AppError, PermanentError, serviceUnavailable } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { CryptoError, open, seal } from "../../lib/sealing.js";
import { type SealedStore, sealedStoreSchema, storeSealContext } from "../../queues/encryption.js";
import type { Connections } from "../connections.js";
import { ANONYMOUS_TENANT } from "../identity/caller.js";
import type { SecretsConfig } from "./config.js";
import { openCursor, sealCursor } from "./cursor.js";
import { createSecretsKeys, type SecretsKeys } from "./keys.js";
import { createRetrievalLimits } from "./limits.js";
import { findSecrets, type SecretRow, type SecretWrite, upsertSecrets } from "./queries.js";
import { decryptRecord, encryptRecord } from "./record.js";
import { nextSecretSeq } from "./write-order.js";

// Stores written to Postgres in one statement by a worker (group commit).
const MAX_BATCH = 256;

export interface Retrieval {
  /** The JSON array of {id, value} the key opens, in id order. */
  json: string;
  /** An opaque cursor for the next page: only when more matches exist and this key may page on. */
  nextAfter?: string;
}

/** One page of rows decrypted: the JSON items the key opened, and how many rows it did not open. */
interface OpenedPage {
  items: string[];
  failed: number;
}

export type SecretsService = ReturnType<typeof createSecretsService>;

export function createSecretsService(
  config: SecretsConfig & { QUEUE_PREFIX: string },
  { database, redis }: Pick<Connections, "database" | "redis">,
) {
  // Built on first use: a process without JOB_SEAL_KEY (only possible with a hand-built config;
  // every process that serves secrets must set it) fails secrets requests and jobs, retryably,
  // rather than failing at start.
  let keys: SecretsKeys | undefined;
  const secretsKeys = (): SecretsKeys => {
    if (config.JOB_SEAL_KEY === undefined)
      throw new AppError("INTERNAL", "secrets are not configured on this server (JOB_SEAL_KEY)");
    keys ??= createSecretsKeys(config);
    return keys;
  };
  const writer = createBatcher<SecretWrite>({
    maxBatch: MAX_BATCH,
    flush: (writes) => upsertSecrets(database.sql, writes),
  });
  const limits = createRetrievalLimits(redis, config);

  /** Opens a sealed store. Error messages never quote what was inside. */
  function openStore(id: string, sealed: string): SealedStore {
    let plaintext: Buffer;
    try {
      plaintext = open(secretsKeys().sealKeys, sealed, storeSealContext(id));
    } catch (err) {
      // Retryable: during a seal-key rollout another replica may hold the key it was sealed with.
      if (err instanceof CryptoError)
        throw new Error(
          `sealed payload does not open with this worker's seal keys (JOB_SEAL_KEY, JOB_SEAL_KEYS_ACCEPTED): ${err.message}`,
        );
      throw err;
    }
    const parsed = sealedStoreSchema.safeParse(safeJson(plaintext));
    if (!parsed.success || parsed.data.id !== id) throw new PermanentError("sealed payload is malformed");
    return parsed.data;
  }

  /** Takes `address`'s RATE_LIMITED refusals from `limit`, logging each one. */
  async function consumeOrLog(
    limit: { consume(key: string): Promise<unknown> },
    address: string,
    log: Logger,
    context: Record<string, unknown>,
  ): Promise<void> {
    try {
      await limit.consume(address);
    } catch (err) {
      if (err instanceof AppError && err.code === "RATE_LIMITED")
        log.warn(
          { address, ...context, retryAfter: err.retryAfter },
          `secrets retrieval refused: ${err.message}`,
        );
      throw err;
    }
  }

  /**
   * The master key of a retrieval. A key not in the cache costs one scrypt: it counts against the
   * address's derivations, and waits for a slot among the process's derivations at once.
   */
  async function retrievalMasterKey(
    keys: SecretsKeys,
    scope: { tenant: string; key: string },
    address: string,
    log: Logger,
  ) {
    const { tenant, key } = scope;
    if (!keys.isCached(tenant, key)) await consumeOrLog(limits.derivations, address, log, {});
    return keys.masterKey(tenant, key, limits.derivationGate.run);
  }

  /** Decrypts each row; those the key does not open are left out, and logged (never the key). */
  function openPage(master: Buffer, rows: readonly SecretRow[], log: Logger): OpenedPage {
    const page: OpenedPage = { items: [], failed: 0 };
    for (const row of rows) {
      try {
        const text = decryptRecord(master, row.id, row.ciphertext).toString("utf8");
        // The plaintext is the JSON text the API serialised at store time (authenticated by
        // AES-GCM), so it is spliced in as is rather than parsed and serialised again.
        page.items.push(`{"id":${JSON.stringify(row.id)},"value":${text}}`);
      } catch (err) {
        if (!(err instanceof CryptoError)) throw err;
        page.failed++;
        log.warn({ secretId: row.id, reason: err.message }, "secret left out: the key does not open it");
      }
    }
    return page;
  }

  return {
    /**
     * The payload of a `secrets.store` job: the id in clear, the key and the value sealed with the
     * write's sequence number. `value` is any JSON value.
     */
    async sealStore(store: {
      tenant: string;
      id: string;
      key: string;
      value: unknown;
    }): Promise<{ id: string; sealed: string }> {
      const { tenant, id, key, value } = store;
      const text = JSON.stringify(value);
      const bytes = Buffer.byteLength(text, "utf8");
      if (bytes > config.SECRETS_MAX_VALUE_BYTES)
        throw new AppError(
          "PAYLOAD_TOO_LARGE",
          `value is ${bytes} bytes as JSON; the limit is ${config.SECRETS_MAX_VALUE_BYTES}`,
        );
      const { sealKeys } = secretsKeys();
      if (redis.status !== "ready") throw serviceUnavailable("Redis");
      const seq = await nextSecretSeq(redis, config.QUEUE_PREFIX);
      const sealed = seal(
        sealKeys,
        JSON.stringify({ tenant, id, key, value: text, seq } satisfies SealedStore),
        storeSealContext(id),
      );
      return { id, sealed };
    },

    /** Opens a sealed store, encrypts the value under the client's key and writes it (last write wins). */
    async writeSealed(id: string, sealed: string): Promise<void> {
      const store = openStore(id, sealed);
      const master = await secretsKeys().masterKey(store.tenant ?? ANONYMOUS_TENANT, store.key);
      const ciphertext = encryptRecord(master, store.id, Buffer.from(store.value, "utf8"));
      // Postgres unreachable: the worker runtime delays the job without spending an attempt.
      // A store sealed before secrets had tenants is the anonymous tenant's.
      await writer.add({
        tenant: store.tenant ?? ANONYMOUS_TENANT,
        id: store.id,
        ciphertext,
        seq: store.seq,
      });
    },

    /**
     * The tenant's records matching an exact id or a `*` pattern that `key` opens, in id order; at
     * most `limit` matches examined, from the cursor `after` (given out to this tenant only).
     * Records the key does not open are left out (and logged), and the answer says nothing about
     * them: no id, no count, and the same work (one key derivation) whether anything matched or
     * not. Another tenant's records are never read. Past the address's limits: RATE_LIMITED.
     */
    async retrieve(query: {
      tenant: string;
      pattern: string;
      key: string;
      after?: string | undefined;
      limit: number;
      address: string;
      log: Logger;
    }): Promise<Retrieval> {
      const { tenant, pattern, key, limit, address, log } = query;
      const scope = { tenant, pattern };
      const keys = secretsKeys();
      // Reserved before anything is read or derived, so concurrent guesses cannot all pass one
      // check made before any of them failed; given back below unless the retrieval counts.
      await consumeOrLog(limits.failedDecryptions, address, log, { pattern });

      // One failure per request, however many records it missed: a key that opens some records of
      // a mixed family is not a guess, and must not be locked out after one request. An answer
      // with nothing in it counts too: were it free, a guesser near the limit would learn from the
      // next 429 whether a pattern matched anything. An error of ours (a refused derivation,
      // Postgres down) counts for nothing.
      let failed = false;
      try {
        const master = await retrievalMasterKey(keys, { tenant, key }, address, log);
        const after =
          query.after === undefined ? undefined : openCursor(keys.cursorKeys, master, scope, query.after);
        if (query.after !== undefined && after === undefined) {
          // Counted: with a cursor it was not given, a key is a guess like any other.
          failed = true;
          throw notOurCursor();
        }
        const rows = await findSecrets(database.sql, { tenant, pattern, after, limit: limit + 1 });
        const examined = rows.slice(0, limit);
        const page = openPage(master, examined, log);
        failed = page.failed > 0 || page.items.length === 0;
        // Only a key that has opened a record of this pattern pages on (this page, or an earlier
        // one: its cursor opened), so a wrong key never learns that more records match.
        const last = examined.at(-1);
        const pagesOn =
          rows.length > limit && last !== undefined && (page.items.length > 0 || after !== undefined);
        return {
          json: `[${page.items.join(",")}]`,
          nextAfter: pagesOn ? sealCursor(keys.cursorKeys, master, scope, last.id) : undefined,
        };
      } finally {
        if (!failed)
          await limits.failedDecryptions
            .reward(address)
            .catch((err: Error) =>
              log.warn({ err: { message: err.message } }, "secrets: could not give an attempt back"),
            );
      }
    },

    async close(): Promise<void> {
      await writer.drain();
      keys?.clear();
    },
  };
}

const notOurCursor = () =>
  new AppError(
    "VALIDATION_FAILED",
    "after is not a cursor of this retrieval: send back the X-Next-After of the previous page, " +
      "with the same id and key",
    [{ path: "after", message: "not a cursor given out for this id and key" }],
  );

function safeJson(buffer: Buffer): unknown {
  try {
    return JSON.parse(buffer.toString("utf8"));
  } catch {
    // JSON.parse's message quotes the input, which is secret here.
    return undefined;
  }
}
