// `chunk-hashing`: `files.verify` reads every chunk of one version of a file back from the file
// store, recomputes its SHA-1 and the whole file's, and marks the file verified or corrupted.
// Only the version named in the job is ever touched: if the name moved on, the job is moot.
import type { Job } from "bullmq";
import { createFileStore, fileKeyPrefix, fileStoreSettings, readCheckedChunks } from "../lib/file-store.js";
import { chunkHashingQueue } from "../queues/chunk-hashing.js";
import { jobPayload, type ProcessorFactory, unrecoverable } from "./runtime.js";

// Progress is one Redis write per update: a file of 50,000 small chunks needs no 50,000.
const PROGRESS_EVERY_MS = 250;

export const chunkHashingProcessor: ProcessorFactory = ({ config, fileStore }) => {
  const store = createFileStore(fileStore, fileKeyPrefix(config.QUEUE_PREFIX), fileStoreSettings(config));
  return {
    async handle(job: Job, log) {
      const payload = jobPayload(chunkHashingQueue, "files.verify", job);
      const { name, version } = payload;
      const manifest = await store.head(name);
      if (!manifest || manifest.version !== version) return { name, version, outcome: "superseded" };
      if (manifest.state === "corrupted")
        unrecoverable(new Error(`file ${name} is already marked corrupted: ${manifest.stateReason ?? ""}`));

      const started = performance.now();
      let problem: string | undefined;
      let lastProgress = 0;
      // Each chunk's SHA-1 and the whole file's, hashed on a worker thread as chunks arrive.
      for await (const chunk of readCheckedChunks(store, manifest, {
        from: 0,
        to: manifest.chunks - 1,
        whole: true,
        parallelism: store.settings.parallelism,
      })) {
        // Checked is all this needs: the bytes go back to the pool at once.
        chunk.release();
        const { index } = chunk;
        problem = chunk.problem;
        if (problem) break;
        const now = performance.now();
        if (now - lastProgress >= PROGRESS_EVERY_MS || index === manifest.chunks - 1) {
          lastProgress = now;
          await job.updateProgress({ chunksDone: index + 1, chunks: manifest.chunks });
        }
      }
      if (problem) {
        // A chunk that vanished because the name was overwritten or deleted is not damage.
        if (!(await store.setState(name, version, "corrupted", problem))) {
          const now = await store.head(name);
          if (!now || now.version !== version) return { name, version, outcome: "superseded" };
        }
        log.error({ name, version, reason: problem }, "stored file is corrupted");
        unrecoverable(new Error(`file ${name} is corrupted: ${problem}`));
      }
      await store.setState(name, version, "verified");
      const seconds = (performance.now() - started) / 1000;
      const result = {
        name,
        version,
        outcome: "verified",
        size: manifest.size,
        chunks: manifest.chunks,
        sha1: manifest.sha1,
        ms: Math.round(seconds * 1000),
        mbPerSecond: Math.round(manifest.size / 1e6 / Math.max(seconds, 1e-6)),
      };
      log.info(result, "file verified");
      return result;
    },
  };
};
