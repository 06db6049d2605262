// The files domain: a temporary in-memory file store. Uploads and downloads stream through the
// API in chunks (streams.ts), each chunk hashed on the pool's threads (sha1-pool.ts) and read back
// by a reader of its own (chunk-reader.ts); `files.verify` jobs check a stored version at rest.
import { PermanentError, serviceUnavailable } from "../../lib/errors.js";
import type { Logger } from "../../lib/logger.js";
import { chunkHashingQueue } from "../../queues/chunk-hashing.js";
import { enqueue } from "../../queues/contract.js";
import type { Connections } from "../connections.js";
import { createChunkReader } from "./chunk-reader.js";
import type { FilesConfig } from "./config.js";
import { createSha1Pool } from "./sha1-pool.js";
import {
  createFileStore,
  type FileManifest,
  type FileStoreSettings,
  fileKeyPrefix,
  readCheckedChunks,
} from "./store.js";
import { openDownload, receiveUpload, type UploadOptions } from "./streams.js";

// Progress is one Redis write per update: a file of 50,000 small chunks needs no 50,000.
const PROGRESS_EVERY_MS = 250;
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
  leaseMs: 60_000,
});

export type FilesService = ReturnType<typeof createFilesService>;

export function createFilesService(
  config: FilesConfig & { QUEUE_PREFIX: string },
  { fileStore, queues }: Pick<Connections, "fileStore" | "queues">,
) {
  const settings = fileStoreSettings(config);
  // A transfer holds parallelism + 1 chunk buffers: an upload's writes in flight and the chunk
  // filling, a download's chunks read ahead and the one being sent (streams.ts).
  const pool = createSha1Pool({ keepIdleBytes: settings.chunkSize * (settings.parallelism + 1) });
  const reader = createChunkReader(fileStore);
  const store = createFileStore({
    redis: fileStore,
    reader,
    pool,
    keyPrefix: fileKeyPrefix(config.QUEUE_PREFIX),
    settings,
  });

  /** The store, or 503 when its connection is lost. */
  function available() {
    if (STORE_DOWN.has(fileStore.status)) throw serviceUnavailable("the file store");
    return store;
  }

  return {
    store,
    settings,
    available,

    /** Streams `body` into the store under `name`, then enqueues the version's verification. */
    async upload(name: string, body: AsyncIterable<Uint8Array> | null, opts: UploadOptions) {
      const manifest = await receiveUpload(available(), name, body, opts);
      const job = await enqueue(queues.get(chunkHashingQueue.name), chunkHashingQueue, "files.verify", {
        name,
        version: manifest.version,
      });
      return { manifest, verificationJobId: job.id ?? "" };
    },

    openDownload: (name: string, opts: Parameters<typeof openDownload>[2]) =>
      openDownload(available(), name, opts),

    head: (name: string) => available().head(name),
    list: () => available().list(),
    remove: (name: string) => available().remove(name),

    /**
     * Reads every chunk of one version back, recomputes each SHA-1 and the whole file's, and marks
     * the file verified or corrupted (FileCorruptedError). Only that version is touched: if the
     * name moved on, the outcome is "superseded".
     */
    async verify(
      name: string,
      version: string,
      opts: { log: Logger; progress: (p: { chunksDone: number; chunks: number }) => Promise<unknown> },
    ): Promise<VerifyOutcome> {
      const manifest: FileManifest | null = await store.head(name);
      if (!manifest || manifest.version !== version) return { name, version, outcome: "superseded" };
      if (manifest.state === "corrupted")
        throw new FileCorruptedError(
          `file ${name} is already marked corrupted: ${manifest.stateReason ?? ""}`,
        );

      const started = performance.now();
      let problem: string | undefined;
      let lastProgress = 0;
      // Each chunk's SHA-1 and the whole file's, hashed on a worker thread as chunks arrive.
      for await (const chunk of readCheckedChunks(store, manifest, {
        from: 0,
        to: manifest.chunks - 1,
        whole: true,
        parallelism: settings.parallelism,
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
