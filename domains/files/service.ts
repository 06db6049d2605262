// The files domain: a temporary in-memory file store. Uploads and downloads stream through the
// API in chunks (streams.ts), each chunk hashed on the pool's threads (sha1-pool.ts) and read back
// by a reader of its own (chunk-reader.ts); `files.verify` jobs check a stored version at rest.
// The service also decides which transfers may start: at most FILE_MAX_TRANSFERS_PER_CLIENT per
// client address, and only with chunk buffers from the process's memory budget (memory-budget.ts).
import { AppError, PermanentError, serviceUnavailable } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { chunkHashingQueue } from "../../queues/chunk-hashing.js";
import { enqueue } from "../../queues/contract.js";
import type { Connections } from "../connections.js";
import { createChunkReader } from "./chunk-reader.js";
import { type FilesConfig, memoryBudgetBytes } from "./config.js";
import { createMemoryBudget, type TransferBuffers } from "./memory-budget.js";
import { createSha1Pool } from "./sha1-pool.js";
import {
  createFileStore,
  type FileManifest,
  type FileStoreSettings,
  fileKeyPrefix,
  readCheckedChunks,
} from "./store.js";
import { openDownload, receiveUpload, type Transfer, type UploadOptions } from "./streams.js";

// Progress is one Redis write per update: a file of 50,000 small chunks needs no 50,000.
const PROGRESS_EVERY_MS = 250;
/**
 * How long a transfer may wait for its first chunk buffer before it answers 503: long enough for
 * the transfers under way to hand one on, short enough not to hold a request that cannot start.
 */
const BUFFER_WAIT_MS = 2_000;
/** Retry-After of a transfer refused for being one too many (429) or finding no buffer (503). */
const BUSY_RETRY_AFTER_SECONDS = 2;
// While it first connects, commands wait in the offline queue; once lost, answer 503 at once.
const STORE_DOWN = new Set(["reconnecting", "close", "end"]);

export type VerifyOutcome =
  | { name: string; version: string; outcome: "superseded" }
  | {
      name: string;
      version: string;
      outcome: "verified";
      size: number;
      chunks: number;
      sha1: string;
      ms: number;
      mbPerSecond: number;
    };

/** A stored file failed verification: no retry can mend it. */
export class FileCorruptedError extends PermanentError {
  override readonly name = "FileCorruptedError";
}

export const fileStoreSettings = (c: FilesConfig): FileStoreSettings => ({
  chunkSize: c.FILE_CHUNK_SIZE,
  parallelism: c.FILE_PARALLELISM,
  ttlSeconds: c.FILE_TTL_SECONDS,
  maxBytes: c.FILE_MAX_BYTES,
  storeMaxBytes: c.FILE_STORE_MAX_BYTES,
  idleTimeoutMs: c.FILE_IDLE_TIMEOUT_MS,
  leaseMs: 60_000,
});

/**
 * Transfers under way per client address, in this process only (so the limit is per replica):
 * enter() gives a place back, or throws 429 when `max` are already running.
 */
function createClientLimit(max: number) {
  const running = new Map<string, number>();
  return {
    enter(client: string): () => void {
      const count = running.get(client) ?? 0;
      if (count >= max)
        throw new AppError(
          "RATE_LIMITED",
          `this client already runs ${max} file transfers (FILE_MAX_TRANSFERS_PER_CLIENT); retry when one has ended`,
          undefined,
          BUSY_RETRY_AFTER_SECONDS,
        );
      running.set(client, count + 1);
      let left = false;
      return () => {
        if (left) return;
        left = true;
        const now = (running.get(client) ?? 1) - 1;
        if (now === 0) running.delete(client);
        else running.set(client, now);
      };
    },
  };
}

export type FilesService = ReturnType<typeof createFilesService>;

export function createFilesService(
  config: FilesConfig & { QUEUE_PREFIX: string },
  { fileStore, queues }: Pick<Connections, "fileStore" | "queues">,
) {
  const settings = fileStoreSettings(config);
  // A transfer holds up to parallelism + 1 chunk buffers: an upload's writes in flight and the
  // chunk filling, a download's chunks read ahead and the one being sent (streams.ts).
  const buffersPerTransfer = settings.parallelism + 1;
  const pool = createSha1Pool({ keepIdleBytes: settings.chunkSize * buffersPerTransfer });
  const budget = createMemoryBudget({ limitBytes: memoryBudgetBytes(config), pool });
  const clients = createClientLimit(config.FILE_MAX_TRANSFERS_PER_CLIENT);
  const reader = createChunkReader(fileStore);
  const stores = createFileStore({
    redis: fileStore,
    reader,
    pool,
    keyPrefix: fileKeyPrefix(config.QUEUE_PREFIX),
    settings,
  });

  /** The tenant's view of the store, or 503 when its connection is lost. */
  function available(tenant: string) {
    if (STORE_DOWN.has(fileStore.status)) throw serviceUnavailable("the file store");
    return stores.forTenant(tenant);
  }

  /** Chunk buffers for a transfer, or 503 when the budget frees none within BUFFER_WAIT_MS. */
  async function openBuffers(chunkBytes: number): Promise<TransferBuffers> {
    const buffers = await budget.open(chunkBytes, buffersPerTransfer, BUFFER_WAIT_MS);
    if (buffers) return buffers;
    throw new AppError(
      "SERVICE_UNAVAILABLE",
      "too many file transfers under way for this server's memory (FILE_MEMORY_BUDGET_BYTES); retry later",
      undefined,
      BUSY_RETRY_AFTER_SECONDS,
    );
  }

  /** A transfer for `client` (its remote address): a place among its transfers, then its buffers. */
  async function admit(client: string, chunkBytes: number): Promise<Transfer> {
    const leave = clients.enter(client);
    try {
      const buffers = await openBuffers(chunkBytes);
      return {
        buffers,
        end: () => {
          buffers.close();
          leave();
        },
      };
    } catch (err) {
      leave();
      throw err;
    }
  }

  return {
    /** One tenant's view of the store (tests, benchmarks); requests go through the methods below. */
    storeFor: (tenant: string) => stores.forTenant(tenant),
    settings,
    available,
    /** The chunk buffers of this process's transfers against FILE_MEMORY_BUDGET_BYTES. */
    memory: budget as Pick<typeof budget, "limitBytes" | "inUseBytes" | "peakBytes">,

    /**
     * Streams `body` into the tenant's store under `name`, then enqueues the version's
     * verification (the tenant's job). `client`: the caller's address, for
     * FILE_MAX_TRANSFERS_PER_CLIENT.
     */
    async upload(
      tenant: string,
      name: string,
      body: AsyncIterable<Uint8Array> | null,
      opts: Omit<UploadOptions, "admit"> & { client: string },
    ) {
      const manifest = await receiveUpload(available(tenant), name, body, {
        ...opts,
        admit: (chunkBytes) => admit(opts.client, chunkBytes),
      });
      const job = await enqueue(
        queues.get(chunkHashingQueue.name),
        chunkHashingQueue,
        "files.verify",
        { tenant, name, version: manifest.version },
        {},
        [tenant],
      );
      return { manifest, verificationJobId: job.id ?? "" };
    },

    /** A GET or HEAD of the tenant's `name`; a GET is admitted for `client` before its first byte. */
    openDownload: (
      tenant: string,
      name: string,
      opts: Omit<Parameters<typeof openDownload>[2], "admit"> & { client: string },
    ) =>
      openDownload(available(tenant), name, {
        ...opts,
        admit: (chunkBytes) => admit(opts.client, chunkBytes),
      }),

    /** Bytes of chunks counted against FILE_STORE_MAX_BYTES, every tenant's together. */
    storedBytes: () => stores.storedBytes(),

    head: (tenant: string, name: string) => available(tenant).head(name),
    list: (tenant: string) => available(tenant).list(),
    remove: (tenant: string, name: string) => available(tenant).remove(name),

    /**
     * Reads every chunk of one version back, recomputes each SHA-1 and the whole file's, and marks
     * the file verified or corrupted (FileCorruptedError). Only that version is touched: if the
     * name moved on, the outcome is "superseded".
     */
    async verify(
      tenant: string,
      name: string,
      version: string,
      opts: { log: Logger; progress: (p: { chunksDone: number; chunks: number }) => Promise<unknown> },
    ): Promise<VerifyOutcome> {
      const store = stores.forTenant(tenant);
      const manifest: FileManifest | null = await store.head(name);
      if (!manifest || manifest.version !== version) return { name, version, outcome: "superseded" };
      if (manifest.state === "corrupted")
        throw new FileCorruptedError(
          `file ${name} is already marked corrupted: ${manifest.stateReason ?? ""}`,
        );

      const started = performance.now();
      let problem: string | undefined;
      let lastProgress = 0;
      // A 503 here fails the attempt, which is retried later.
      const buffers = await openBuffers(manifest.chunkSize);
      try {
        // Each chunk's SHA-1 and the whole file's, hashed on a worker thread as chunks arrive.
        for await (const chunk of readCheckedChunks(store, manifest, {
          from: 0,
          to: manifest.chunks - 1,
          whole: true,
          parallelism: settings.parallelism,
          buffers,
        })) {
          // Checked is all this needs: the bytes go back to the pool at once.
          chunk.release();
          const { index } = chunk;
          problem = chunk.problem;
          if (problem) break;
          const now = performance.now();
          if (now - lastProgress >= PROGRESS_EVERY_MS || index === manifest.chunks - 1) {
            lastProgress = now;
            await opts.progress({ chunksDone: index + 1, chunks: manifest.chunks });
          }
        }
      } finally {
        buffers.close();
      }
      if (problem) {
        // A chunk that vanished because the name was overwritten or deleted is not damage.
        if (!(await store.setState(name, version, "corrupted", problem))) {
          const now = await store.head(name);
          if (!now || now.version !== version) return { name, version, outcome: "superseded" };
        }
        opts.log.error({ name, version, reason: problem }, "stored file is corrupted");
        throw new FileCorruptedError(`file ${name} is corrupted: ${problem}`);
      }
      await store.setState(name, version, "verified");
      const seconds = (performance.now() - started) / 1000;
      return {
        name,
        version,
        outcome: "verified",
        size: manifest.size,
        chunks: manifest.chunks,
        sha1: manifest.sha1,
        ms: Math.round(seconds * 1000),
        mbPerSecond: Math.round(manifest.size / 1e6 / Math.max(seconds, 1e-6)),
      };
    },

    async close(): Promise<void> {
      reader.close();
      await pool.close();
    },
  };
}
