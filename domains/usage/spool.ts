// The local durable spool of hits: while Redis cannot take them, an API process appends the hits
// it acknowledges to a file of its own (JSON lines, fdatasync'd in groups before the 202), and
// replays them into `log-batching` jobs once Redis is back. A hit keeps its id and instant in the
// spool, so a hit replayed twice (a replay cut short, then taken up again) is still counted once.
//
// Files: `<dir>/<process id>-<n>.jsonl`. A writer moves to a new file every ROTATE_MS, so a file
// idle for ADOPT_AFTER_MS is closed for good: any process may then replay it (a process that died
// with hits in its spool, or a replica of a volume shared by several). A replay claims a file by
// renaming it, so two processes never replay one file at the same time.
import { randomBytes } from "node:crypto";
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
} from "node:fs/promises";
import { join } from "node:path";
import { createBatcher } from "../../lib/batcher.js";
import type { Logger } from "../../lib/logger.js";
import { type LoggedHit, loggedHitSchema } from "../../queues/log-batching.js";

/** A writer starts a new file after this long, so older files are closed. */
const ROTATE_MS = 10_000;
/** A file untouched this long is closed: anyone may replay it. */
const ADOPT_AFTER_MS = 60_000;
/** A spool file, or one a replay claimed (and may have died with). */
const SPOOLED = /\.jsonl(\.replaying-[\w-]+)?$/;

export type HitSpool = ReturnType<typeof createHitSpool>;

export function createHitSpool(opts: { dir: string; logger: Logger }) {
  const { dir, logger } = opts;
  const writerId = `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  let sequence = 0;
  let current: { path: string; handle: FileHandle; openedAt: number } | undefined;
  let closed = false;
  /** Hits this process appended and has not replayed (its own files only). */
  let pending = 0;

  async function fileToWrite() {
    if (current && Date.now() - current.openedAt < ROTATE_MS) return current;
    await current?.handle.close();
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${writerId}-${sequence++}.jsonl`);
    current = { path, handle: await open(path, "a", 0o600), openedAt: Date.now() };
    return current;
  }

  // Appends of concurrent requests share one write and one fdatasync (group commit).
  const writer = createBatcher<LoggedHit[]>({
    maxBatch: 1_000,
    maxInFlight: 1,
    flush: async (groups) => {
      const file = await fileToWrite();
      const text = groups.flatMap((hits) => hits.map((h) => JSON.stringify(h))).join("\n");
      await file.handle.write(`${text}\n`);
      await file.handle.datasync();
    },
  });

  /** Hits of a spool file; a torn last line (a crash mid-write, never acknowledged) is skipped. */
  function parse(text: string): LoggedHit[] {
    const hits: LoggedHit[] = [];
    for (const line of text.split("\n")) {
      if (line === "") continue;
      try {
        hits.push(loggedHitSchema.parse(JSON.parse(line)));
      } catch {
        logger.warn({ dir }, "usage spool: an unreadable line was skipped (a write cut short)");
      }
    }
    return hits;
  }

  return {
    /** Appends hits; resolves once they are on disk (fdatasync). */
    async append(hits: LoggedHit[]): Promise<void> {
      if (closed) throw new Error("the spool is closed");
      if (pending === 0)
        logger.warn({ dir }, "usage: Redis cannot take hits; acknowledging them into the spool");
      await writer.add(hits);
      pending += hits.length;
    },

    /**
     * Replays every closed spool file (this process's, after it moves to a new one; others' once
     * idle for ADOPT_AFTER_MS) through `enqueue`, deleting each once all its hits are enqueued.
     * A file whose replay fails stays, for the next one. Answers how many hits were replayed.
     */
    async replay(enqueue: (hits: LoggedHit[]) => Promise<void>): Promise<number> {
      let names: string[];
      try {
        names = (await readdir(dir)).filter((n) => SPOOLED.test(n));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
        throw err;
      }
      if (names.length === 0) return 0;
      // This process's own file is closed first: its hits go out in this replay too.
      if (current && names.includes(current.path.slice(dir.length + 1))) {
        await writer.drain();
        await current.handle.close();
        current = undefined;
      }
      let replayed = 0;
      for (const name of names) {
        const path = join(dir, name);
        const own = name.startsWith(`${writerId}-`) && name.endsWith(".jsonl");
        if (!own) {
          const age = await stat(path).then(
            (s) => Date.now() - s.mtimeMs,
            () => 0,
          );
          if (age < ADOPT_AFTER_MS) continue;
        }
        const claimed = `${path.replace(/\.replaying-[\w-]+$/, "")}.replaying-${writerId}`;
        try {
          await rename(path, claimed);
          // Fresh: a claimed file idle for ADOPT_AFTER_MS counts as abandoned by its replayer.
          const now = new Date();
          await utimes(claimed, now, now);
        } catch {
          continue; // another process claimed it first
        }
        const hits = parse(await readFile(claimed, "utf8"));
        try {
          for (let i = 0; i < hits.length; i += 1_000) await enqueue(hits.slice(i, i + 1_000));
        } catch (err) {
          // Back under its own name, for the next replay (the hits already enqueued count once).
          await rename(claimed, path).catch(() => {});
          throw err;
        }
        await unlink(claimed);
        replayed += hits.length;
        if (own) pending = Math.max(0, pending - hits.length);
      }
      if (replayed > 0) logger.info({ replayed, dir }, "usage spool replayed into log-batching");
      return replayed;
    },

    /** Hits this process appended to its spool and has not replayed yet. */
    pending: () => pending,

    async close(): Promise<void> {
      closed = true;
      await writer.drain();
      await current?.handle.close();
      current = undefined;
    },
  };
}
