// SHA-1 off the event loop: file chunks are hashed on worker threads while the main thread keeps
// moving bytes between HTTP and the store. Every byte of a file is hashed twice (its chunk, and
// the whole file); on the main thread that would cost about as much CPU as all the I/O.
//
// Chunks reach a thread through SharedArrayBuffers from the pool's buffers, which the thread
// reads in place: an upload fills them from the request, a download or a verification reads
// chunks from the store straight into them. Nothing is transferred: a transferred buffer comes
// back as new external memory, which makes V8 collect garbage far more often.
//
// A session hashes one file's chunks in order on one thread: each chunk's SHA-1, and the whole
// file's running SHA-1 for finish().
//
// Dropped buffers need a nudge to be freed. V8 does not count a SharedArrayBuffer as any
// isolate's memory, so none collects garbage for them: a dropped buffer stays allocated until
// both this thread and every hashing thread that saw it happen to collect, which an idle API and
// a hashing thread (a few bytes of garbage per chunk) may not do for hours. So a moment after the
// pool drops buffers it asks for a collection, here and on each hashing thread.
import { availableParallelism } from "node:os";
import v8 from "node:v8";
import vm from "node:vm";
import { Worker } from "node:worker_threads";

// Plain CommonJS run with eval: no loader or build step, so it runs the same under tsx, vitest
// and the compiled build.
const THREAD_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
require("node:v8").setFlagsFromString("--expose-gc");
const collectGarbage = require("node:vm").runInNewContext("gc");
// session -> the whole file's running SHA-1 (sessions that keep one)
const sessions = new Map();
parentPort.on("message", (m) => {
  try {
    if (m.op === "chunk") {
      const bytes = new Uint8Array(m.buffer, m.offset, m.length);
      if (m.whole) {
        if (!sessions.has(m.session)) sessions.set(m.session, createHash("sha1"));
        sessions.get(m.session).update(bytes);
      }
      parentPort.postMessage({ id: m.id, digest: createHash("sha1").update(bytes).digest("hex") });
    } else if (m.op === "finish") {
      const whole = sessions.get(m.session) || createHash("sha1");
      sessions.delete(m.session);
      parentPort.postMessage({ id: m.id, digest: whole.digest("hex") });
    } else if (m.op === "drop") {
      sessions.delete(m.session);
    } else if (m.op === "collect") {
      collectGarbage();
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: String((err && err.message) || err) });
  }
});
`;

/** How long after dropping buffers the pool asks for them to be collected: one collection per burst. */
const COLLECT_AFTER_DROP_MS = 1000;

type GarbageCollector = (opts: { type: "major"; execution: "async" }) => Promise<void>;

/**
 * This thread's garbage collector, as `node --expose-gc` would give it: the flag only adds a `gc`
 * function to contexts created after it is set, which it does not otherwise change.
 */
function garbageCollector(): GarbageCollector {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as GarbageCollector;
}

interface Reply {
  id: number;
  digest?: string;
  error?: string;
}

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (r: Reply) => void; reject: (err: Error) => void }>;
}

export interface Sha1Session {
  /**
   * The chunk's SHA-1, also fed to the whole-file SHA-1 when the session keeps one. Chunks in
   * order, each in a buffer from acquireBuffer that stays untouched until this settles.
   */
  chunk(bytes: Buffer): Promise<string>;
  /** The whole file's SHA-1; ends the session. */
  finish(): Promise<string>;
  /** Ends the session without a digest (a failed transfer). */
  drop(): void;
}

export interface Sha1Pool {
  /**
   * A buffer of `size` bytes backed by shared memory, for a chunk that will be hashed; see
   * releaseBuffer. It may be an idle one of up to `atMost` bytes (default twice `size`).
   */
  acquireBuffer(size: number, atMost?: number): Buffer;
  /** Gives a buffer from acquireBuffer back, once nothing (a write, a hash) reads it any more. */
  releaseBuffer(buffer: Buffer): void;
  /** A hashing session on one thread; `whole` keeps the running whole-file SHA-1 too. */
  openSession(opts: { whole: boolean }): Sha1Session;
  /** Bytes of idle buffers kept for reuse. */
  readonly idleBytes: number;
  /** Stops the threads; sessions still open fail. */
  close(): Promise<void>;
}

/**
 * The hashing threads and the shared buffers they read. `keepIdleBytes`: idle buffers kept for
 * reuse, at least a transfer's whole working set so that one transfer after another allocates
 * nothing. Threads start on first use, one per spare core up to 4 (one thread hashes about
 * 1 GB/s: two passes, so ~500 MB/s of file).
 */
export function createSha1Pool(opts: { keepIdleBytes: number; threads?: number }): Sha1Pool {
  const threadCount = opts.threads ?? Math.max(1, Math.min(4, availableParallelism() - 1));
  // Shared buffers, reused: allocating (and faulting in) megabytes per chunk costs more than
  // hashing them, and a dropped one lingers until both this thread and the hashing thread have
  // collected garbage.
  const maxIdleBytes = Math.max(32 * 1024 * 1024, opts.keepIdleBytes);
  const idle: SharedArrayBuffer[] = [];
  let idleBytes = 0;
  let collection: NodeJS.Timeout | undefined;
  let collectHere: GarbageCollector | undefined;
  let threads: Thread[] = [];
  let nextThread = 0;
  let nextId = 0;
  let nextSession = 0;

  function startThread(): Thread {
    const worker = new Worker(THREAD_SOURCE, { eval: true });
    // An idle hashing thread must not keep a process (a test run, a CLI) alive.
    worker.unref();
    const thread: Thread = { worker, pending: new Map() };
    worker.on("message", (reply: Reply) => {
      const waiter = thread.pending.get(reply.id);
      if (!waiter) return;
      thread.pending.delete(reply.id);
      if (reply.error !== undefined) waiter.reject(new Error(`SHA-1 thread: ${reply.error}`));
      else waiter.resolve(reply);
    });
    const fail = (err: Error) => {
      // The next session starts a fresh thread; this one's callers get the error.
      threads = threads.filter((t) => t !== thread);
      for (const waiter of thread.pending.values()) waiter.reject(err);
      thread.pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`SHA-1 thread exited with code ${code}`)));
    return thread;
  }

  function pickThread(): Thread {
    while (threads.length < threadCount) threads.push(startThread());
    return threads[nextThread++ % threads.length] as Thread;
  }

  /** Frees the buffers dropped lately: collections here and on the hashing threads, which saw them. */
  function collectDropped(): void {
    collection ??= setTimeout(() => {
      collection = undefined;
      for (const thread of threads) thread.worker.postMessage({ op: "collect", id: -1 });
      collectHere ??= garbageCollector();
      // Incremental: the event loop goes on meanwhile.
      void collectHere({ type: "major", execution: "async" });
    }, COLLECT_AFTER_DROP_MS);
    collection.unref();
  }

  function call(thread: Thread, message: Record<string, unknown>): Promise<Reply> {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      thread.pending.set(id, { resolve, reject });
      thread.worker.postMessage({ ...message, id });
    });
  }

  return {
    acquireBuffer(size, atMost = size * 2) {
      // Any idle buffer that fits without wasting more than half of it (or more than allowed).
      const at = idle.findIndex((b) => b.byteLength >= size && b.byteLength <= atMost);
      if (at >= 0) {
        const shared = idle.splice(at, 1)[0] as SharedArrayBuffer;
        idleBytes -= shared.byteLength;
        return Buffer.from(shared, 0, size);
      }
      return Buffer.from(new SharedArrayBuffer(size), 0, size);
    },
    releaseBuffer(buffer) {
      const shared = buffer.buffer;
      if (!(shared instanceof SharedArrayBuffer) || idle.includes(shared)) return;
      if (idleBytes + shared.byteLength > maxIdleBytes) {
        collectDropped();
        return;
      }
      idle.push(shared);
      idleBytes += shared.byteLength;
    },
    get idleBytes() {
      return idleBytes;
    },
    openSession({ whole }) {
      const thread = pickThread();
      const session = nextSession++;
      let dropped = false;
      return {
        async chunk(bytes) {
          // After a drop, chunks the caller had already queued are not hashed (nor would they
          // restart the whole-file state on the thread).
          if (dropped) return "";
          // A buffer from acquireBuffer is read in place; any other would be copied by postMessage.
          const reply = await call(thread, {
            op: "chunk",
            session,
            whole,
            buffer: bytes.buffer,
            offset: bytes.byteOffset,
            length: bytes.byteLength,
          });
          return reply.digest ?? "";
        },
        async finish() {
          return (await call(thread, { op: "finish", session })).digest ?? "";
        },
        drop() {
          dropped = true;
          thread.worker.postMessage({ op: "drop", session, id: -1 });
        },
      };
    },
    async close() {
      clearTimeout(collection);
      const stopping = threads;
      threads = [];
      idle.length = 0;
      idleBytes = 0;
      await Promise.allSettled(stopping.map((t) => t.worker.terminate()));
    },
  };
}
