// File bytes between HTTP and the file store, as streams: an upload is cut into chunks as it
// arrives (never buffered whole), a download is read back chunk by chunk, each chunk checked
// against its SHA-1 before a byte of it is sent. Both move at their client's pace, in chunk
// buffers from the process's memory budget (memory-budget.ts), and end when their client stops
// moving bytes for FILE_IDLE_TIMEOUT_MS.
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { AppError } from "../../lib/errors.js";
import { randomId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import type { TransferBuffers } from "./memory-budget.js";
import {
  type CheckedChunk,
  chunkLength,
  type FileManifest,
  type FileStore,
  newVersion,
  readCheckedChunks,
} from "./store.js";

/** A transfer the files service let start: its chunk buffers, and end() to give its place back. */
export interface Transfer {
  buffers: TransferBuffers;
  /** Called once the transfer is over; its buffers go back to the budget as they come back. */
  end(): void;
}

/**
 * Lets a transfer of chunks of `chunkBytes` start, or throws (429: its client runs too many; 503:
 * the memory budget has no buffer for it). Called before any byte moves.
 */
export type Admit = (chunkBytes: number) => Promise<Transfer>;

export interface UploadOptions {
  /** X-Checksum-SHA1 from the client (lower-case hex), checked against the bytes received. */
  expectedSha1?: string;
  /** Content-Length, when the client sent one: over the limit answers 413 before reading. */
  declaredLength?: number;
  /** Stops the body after a failure; a Node request stream is left to the HTTP server to drain. */
  cancel?: () => void;
  admit: Admit;
  log: Logger;
}

const tooLarge = (max: number) =>
  new AppError("PAYLOAD_TOO_LARGE", `file is larger than the limit of ${max} bytes (FILE_MAX_BYTES)`);

const emptyBody = () => new AppError("EMPTY_BODY", "the request body is empty: nothing to store");

// How full the store is stays unsaid: it would tell a caller how much the other tenants store.
const storageFull = (max: number) =>
  new AppError(
    "STORAGE_FULL",
    `the file store has no room for this file within its ${max} bytes (FILE_STORE_MAX_BYTES); nothing stored`,
    { maxBytes: max },
  );

/** An upload whose client sent no byte for FILE_IDLE_TIMEOUT_MS. */
const uploadIdle = (ms: number) =>
  new AppError(
    "REQUEST_TIMEOUT",
    `the upload sent no byte for ${ms} ms (FILE_IDLE_TIMEOUT_MS); nothing stored`,
  );

/**
 * The body's next piece, or REQUEST_TIMEOUT once it has sent nothing for `idleMs`. (A timer and a
 * promise of its own each time: a race against one long-lived promise would leave a reaction on
 * it per piece, keeping every piece of the body alive to the end.)
 */
async function nextPiece(body: AsyncIterator<Uint8Array>, idleMs: number) {
  let timer: NodeJS.Timeout | undefined;
  const idle = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(uploadIdle(idleMs)), idleMs);
  });
  try {
    return await Promise.race([body.next(), idle]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * At most `limit` writes in flight: add() waits for a free slot, so the reader stops pulling the
 * request body while the store is behind (backpressure), and the first failure is rethrown.
 */
function writeWindow(limit: number) {
  const inFlight = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  const check = () => {
    if (failure) throw failure.err;
  };
  return {
    async add(write: Promise<unknown>) {
      const tracked: Promise<void> = write.then(
        () => {
          inFlight.delete(tracked);
        },
        (err: unknown) => {
          inFlight.delete(tracked);
          failure ??= { err };
        },
      );
      inFlight.add(tracked);
      while (inFlight.size >= limit && !failure) await Promise.race(inFlight);
      check();
    },
    /** Waits for every write; throws the first failure. */
    async drain() {
      await Promise.all(inFlight);
      check();
    },
    /** Waits for every write, ignoring failures (before cleaning up). */
    settle: () => Promise.all(inFlight),
  };
}

/**
 * Streams `body` into the store under a new version and switches the name to it; returns the
 * new manifest. On any failure (client gone or idle, too large, no room, checksum mismatch,
 * store error) the chunks written so far are deleted and nothing becomes visible.
 */
export async function receiveUpload(
  store: FileStore,
  name: string,
  body: AsyncIterable<Uint8Array> | null,
  opts: UploadOptions,
): Promise<FileManifest> {
  const { chunkSize, maxBytes, storeMaxBytes } = store.settings;
  const declared = opts.declaredLength;
  if (declared !== undefined && declared > maxBytes) throw tooLarge(maxBytes);
  if (body === null) throw emptyBody();
  if (declared !== undefined) {
    // Refused before a byte is read; the chunks are counted one by one as they are written.
    const room = await store.roomFor(declared);
    if (!room.fits) throw storageFull(storeMaxBytes);
  }
  const transfer = await opts.admit(chunkSize);
  try {
    return await storeBody(store, name, body, transfer.buffers, opts);
  } finally {
    transfer.end();
  }
}

async function storeBody(
  store: FileStore,
  name: string,
  body: AsyncIterable<Uint8Array>,
  buffers: TransferBuffers,
  opts: UploadOptions,
): Promise<FileManifest> {
  const { chunkSize, parallelism, maxBytes, ttlSeconds, storeMaxBytes, idleTimeoutMs } = store.settings;
  const started = Date.now();
  const version = newVersion();
  // Chunks and manifest expire at the same instant, so a file never outlives its bytes.
  const expiresAtMs = started + ttlSeconds * 1000;
  const chunkSha1: string[] = [];
  let chunkCount = 0;
  const writes = writeWindow(parallelism);
  // Both SHA-1s are computed on a hashing thread, chunk by chunk, while this thread goes on
  // reading the body: see sha1-pool.ts.
  const hashing = store.pool.openSession({ whole: true });
  let size = 0;
  // Chunk buffers come from the hashing module's shared pool (the hashing thread reads them in
  // place), lent by the memory budget, and go back once both the hash and the write are done
  // with them: at most `parallelism` chunks in flight plus the one being filled, fewer when the
  // budget is short (then filling waits for a write to finish).
  let buffer: Buffer | undefined;
  let filled = 0;

  const flush = async () => {
    const full = buffer as Buffer;
    buffer = undefined;
    const index = chunkCount++;
    const bytes = filled === full.length ? full : full.subarray(0, filled);
    filled = 0;
    // Hash, write and count against FILE_STORE_MAX_BYTES at once: the hash and the write only
    // read the buffer, and a chunk past the limit is deleted with the others.
    const hashed = hashing.chunk(bytes).then((sha1) => {
      chunkSha1[index] = sha1;
    });
    const written = store.writeChunk(version, index, bytes, expiresAtMs);
    const counted = store.countBytes(version, bytes.length, expiresAtMs).then((room) => {
      if (!room.fits) throw storageFull(storeMaxBytes);
    });
    await writes.add(
      Promise.all([hashed, written, counted]).finally(() =>
        Promise.allSettled([hashed, written]).then(() => buffers.release(full)),
      ),
    );
  };

  const chunks = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      // A client that goes away errors the body stream, and one that sends nothing for
      // FILE_IDLE_TIMEOUT_MS fails nextPiece: either lands in the catch below.
      const { done, value } = await nextPiece(chunks, idleTimeoutMs);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      let offset = 0;
      while (offset < value.byteLength) {
        buffer ??= await buffers.acquire(chunkSize);
        const take = Math.min(chunkSize - filled, value.byteLength - offset);
        const part = take === value.byteLength ? value : value.subarray(offset, offset + take);
        buffer.set(part, filled);
        filled += take;
        offset += take;
        if (filled === chunkSize) await flush();
      }
    }
    if (size === 0) throw emptyBody();
    if (filled > 0) await flush();
    await writes.drain();
    const sha1 = await hashing.finish();
    if (opts.expectedSha1 !== undefined && opts.expectedSha1 !== sha1)
      throw new AppError(
        "CHECKSUM_MISMATCH",
        "the bytes received do not match X-Checksum-SHA1; nothing stored",
        {
          expected: opts.expectedSha1,
          received: sha1,
          size,
        },
      );

    const manifest: FileManifest = {
      name,
      version,
      size,
      sha1,
      chunkSize,
      chunks: chunkCount,
      chunkSha1,
      state: "pending",
      stateReason: null,
      createdAt: new Date(started).toISOString(),
      expiresAt: new Date(expiresAtMs).toISOString(),
      checkedAt: null,
    };
    const previous = await store.commit(manifest, expiresAtMs);
    if (previous) {
      // The new version is already served; a failure here only leaves old chunks to their TTL.
      await store
        .retire(name, previous.version, previous.chunks)
        .catch((err: unknown) =>
          opts.log.warn({ err, name, version: previous.version }, "could not delete the replaced version"),
        );
    }
    opts.log.info({ name, version, size, chunks: manifest.chunks, ms: Date.now() - started }, "file stored");
    return manifest;
  } catch (err) {
    opts.cancel?.();
    hashing.drop();
    // The chunk being filled; the ones in flight come back as their writes settle.
    if (buffer) buffers.release(buffer);
    await writes.settle();
    await store
      .deleteChunks(version, chunkCount)
      // Counted until the chunks are gone: if they cannot be deleted, they stay to their TTL.
      .then(() => store.forgetBytes(version))
      .catch((cleanupErr: unknown) =>
        opts.log.warn({ err: cleanupErr, name, version }, "could not delete the chunks of a failed upload"),
      );
    opts.log.info(
      { name, version, received: size, reason: err instanceof Error ? err.message : String(err) },
      "upload abandoned; its chunks were deleted",
    );
    throw err;
  }
}

/**
 * A download's chunk goes to the socket this much at a time, each piece once the socket has taken
 * the one before: a slow client that keeps reading shows progress well within FILE_IDLE_TIMEOUT_MS
 * even when a whole chunk would take longer.
 */
const SEND_PIECE_BYTES = 1024 * 1024;

/** A download whose client took no byte for FILE_IDLE_TIMEOUT_MS; its connection is closed. */
class ClientStalled extends Error {
  override readonly name = "ClientStalled";
}

/**
 * Resolves once the socket has taken `bytes` (so they may be reused); rejects if the connection
 * closes first, or, destroying it, if the socket takes none of them for `idleMs` while this
 * response is the one it sends. A write may never call back when the connection closes: not
 * when the socket was destroyed mid-write, nor when this response still waited behind an earlier
 * one on the connection (HTTP pipelining, where the response itself never closes). Once the
 * connection is closed, nothing reads `bytes`.
 */
function writeAndWait(out: ServerResponse, connection: Socket, bytes: Buffer, idleMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const gone = () => reject(new ClientGoneError("the client went away"));
    if (connection.closed) return gone();
    let stalled: NodeJS.Timeout | undefined;
    // A response queued behind another on its connection is not idle: it waits its turn (and
    // the one ahead has its own deadline).
    const watch = () => {
      stalled = setTimeout(() => {
        // Destroyed before the rejection lets the caller reuse `bytes`.
        out.destroy();
        reject(new ClientStalled(`the client took no byte for ${idleMs} ms (FILE_IDLE_TIMEOUT_MS)`));
      }, idleMs);
    };
    if (out.socket) watch();
    else out.once("socket", watch);
    out.once("close", gone);
    connection.once("close", gone);
    out.write(bytes, (err) => {
      clearTimeout(stalled);
      out.off("socket", watch);
      out.off("close", gone);
      connection.off("close", gone);
      // A failed write (ECONNRESET, EPIPE) is the client gone too, seen from the socket.
      if (err) reject(new ClientGoneError(err.message, { cause: err }));
      else resolve();
    });
  });
}

/** The other end of a download closed the connection: routine, not a failure of the server. */
class ClientGoneError extends Error {
  override readonly name = "ClientGoneError";
}

/** Writes `bytes` piece by piece at the socket's pace (backpressure), each as it is, uncopied. */
async function sendChunk(out: ServerResponse, connection: Socket, bytes: Buffer, idleMs: number) {
  for (let at = 0; at < bytes.length; at += SEND_PIECE_BYTES) {
    await writeAndWait(out, connection, bytes.subarray(at, at + SEND_PIECE_BYTES), idleMs);
  }
}

export type ByteRange = { start: number; end: number };

/**
 * The one range of a `Range: bytes=…` header (end inclusive), "unsatisfiable", or undefined when
 * there is none or it is ignored (malformed, several ranges, or an If-Range that no longer matches):
 * RFC 9110 lets a server answer those with the whole file.
 */
export function parseRange(
  header: string | undefined,
  size: number,
  ifRange?: { header: string | undefined; etag: string },
): ByteRange | "unsatisfiable" | undefined {
  if (!header) return undefined;
  if (ifRange?.header !== undefined && ifRange.header !== ifRange.etag) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, a = "", b = ""] = match;
  if (a === "" && b === "") return undefined;
  if (a === "") {
    const suffix = Number(b);
    return suffix === 0 ? "unsatisfiable" : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  if (b !== "" && Number(b) < start) return undefined;
  if (start >= size) return "unsatisfiable";
  return { start, end: b === "" ? size - 1 : Math.min(Number(b), size - 1) };
}

export interface Download {
  manifest: FileManifest;
  status: 200 | 206;
  headers: Record<string, string>;
  /**
   * Writes the bytes to a Node response whose head is written, without copying them, and ends
   * it; cuts the connection on damage. Absent for HEAD; use either this or stream(), once.
   */
  sendTo?: (out: ServerResponse, connection: Socket) => Promise<void>;
  /**
   * The bytes as a web stream, copied (for a fetch-style caller such as app.request), read ahead
   * only as it is pulled; errored when not pulled for FILE_IDLE_TIMEOUT_MS. Absent for HEAD.
   */
  stream?: () => ReadableStream<Uint8Array>;
  /**
   * Stops reading and releases the read lease; for a client that went away before the server
   * started pulling the body (nothing would ever cancel it then). Harmless after the end.
   */
  abort(): void;
}

const corrupted = (m: Pick<FileManifest, "name">, reason: string) =>
  new AppError("FILE_CORRUPTED", `file ${m.name} is corrupted and is not served: ${reason}`);

/** Records a damage a download found, so the next request is refused before its first byte. */
async function flagCorrupted(store: FileStore, m: FileManifest, reason: string, log: Logger) {
  log.error({ name: m.name, version: m.version, reason }, "stored file is corrupted");
  await store
    .setState(m.name, m.version, "corrupted", reason)
    .catch((err: unknown) => log.warn({ err, name: m.name }, "could not mark the file corrupted"));
}

/**
 * Opens `name` for a GET (or HEAD): the manifest under a read lease, and a stream that verifies
 * each chunk before sending it and the whole-file SHA-1 before the last byte. Damage found
 * before the first byte is an error answer (FILE_CORRUPTED); damage found later errors the
 * stream, which cuts the connection: the client sees a short read, never wrong bytes. A GET is
 * admitted (`admit`: 429, 503) before its first chunk is read, so before any byte is sent.
 */
export async function openDownload(
  store: FileStore,
  name: string,
  opts: { head: boolean; range?: string; ifRange?: string; log: Logger; admit: Admit },
): Promise<Download> {
  const { log } = opts;
  const leaseId = randomId();
  const manifest = opts.head ? await store.head(name) : await store.openForRead(name, leaseId);
  if (!manifest) throw new AppError("NOT_FOUND", `no file named ${name}`);

  // The lease keeps the version's chunks alive while this download reads them, even if the name
  // is overwritten or deleted meanwhile; released (and the version retired if it is no longer
  // current) when the stream ends, fails or is cancelled.
  let released = opts.head;
  const renewal = opts.head
    ? undefined
    : setInterval(() => {
        store
          .renewLease(name, manifest.version, leaseId)
          .catch((err: unknown) => log.warn({ err, name }, "could not renew a read lease"));
      }, store.settings.leaseMs / 3);
  renewal?.unref();
  let transfer: Transfer | undefined;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(renewal);
    transfer?.end();
    store
      .retire(name, manifest.version, manifest.chunks, leaseId)
      .catch((err: unknown) => log.warn({ err, name }, "could not release a read lease"));
  };

  try {
    if (manifest.state === "corrupted")
      throw corrupted(manifest, manifest.stateReason ?? "failed verification");
    const etag = `"${manifest.sha1}"`;
    const range = parseRange(opts.range, manifest.size, { header: opts.ifRange, etag });
    if (range === "unsatisfiable")
      throw new AppError("RANGE_NOT_SATISFIABLE", `the range is outside the file's ${manifest.size} bytes`, {
        size: manifest.size,
      });
    const start = range?.start ?? 0;
    const end = range?.end ?? manifest.size - 1;
    const headers: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Content-Length": String(end - start + 1),
      ETag: etag,
      "X-Checksum-SHA1": manifest.sha1,
      "X-File-State": manifest.state,
      "Accept-Ranges": "bytes",
    };
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${manifest.size}`;
    const status = range ? 206 : 200;
    if (opts.head) return { manifest, status, headers, abort: () => {} };

    // The chunk size the file was stored with (FILE_CHUNK_SIZE may have changed since).
    const { chunkSize } = manifest;
    const { parallelism, idleTimeoutMs } = store.settings;
    transfer = await opts.admit(chunkSize);
    const first = Math.floor(start / chunkSize);
    const last = Math.floor(end / chunkSize);
    const chunks = readCheckedChunks(store, manifest, {
      from: first,
      to: last,
      // The whole-file SHA-1 can only be checked when every byte passes through.
      whole: start === 0 && end === manifest.size - 1,
      parallelism,
      buffers: transfer.buffers,
    });

    // The first chunk is read and checked before answering, so damage there is a clean 500.
    let pending: CheckedChunk | undefined = (await chunks.next()).value;
    const firstProblem = pending ? pending.problem : "chunk list ended early";
    if (firstProblem) {
      // The chunks read ahead go back, and the hashing session ends.
      void chunks.return(undefined);
      await flagCorrupted(store, manifest, firstProblem, log);
      throw corrupted(manifest, firstProblem);
    }
    let stopped = false;
    /** The web stream's wait for its reader's next pull (FILE_IDLE_TIMEOUT_MS). */
    let idle: NodeJS.Timeout | undefined;
    const stop = () => {
      stopped = true;
      clearTimeout(idle);
      release();
      // The first chunk, when nothing ever asked for it (a client gone before the body started).
      pending?.release();
      pending = undefined;
      void chunks.return(undefined);
    };
    let sentLast = false;
    /**
     * The response's next part: the bytes it wants of the next checked chunk, a view into that
     * chunk's pooled buffer, valid until release(); undefined after the last. Damage throws.
     */
    const nextPart = async (): Promise<{ bytes: Buffer; release(): void } | undefined> => {
      if (sentLast) return undefined;
      let item = pending;
      pending = undefined;
      if (!item) {
        item = (await chunks.next()).value;
        if (!item) throw new Error("chunk list ended early");
        if (item.problem) {
          await flagCorrupted(store, manifest, item.problem, log);
          throw corrupted(manifest, item.problem);
        }
      }
      sentLast = item.index === last;
      const from = item.index === first ? start - item.index * chunkSize : 0;
      const to = item.index === last ? end - item.index * chunkSize + 1 : chunkLength(manifest, item.index);
      return { bytes: (item.bytes as Buffer).subarray(from, to), release: item.release };
    };
    const cutShort = (err: unknown) => {
      // A client that goes away (stopped by the route, or seen by a write) is routine, a stalled
      // one is worth a line; only what failed on this side (the store, a damaged chunk) is an error.
      const version = manifest.version;
      const reason = (err as Error).message;
      if (err instanceof ClientStalled)
        log.info({ name, version, reason }, "download stalled; its connection was closed");
      else if (stopped || err instanceof ClientGoneError)
        log.debug({ name, version, reason }, "download stopped: the client went away");
      else log.error({ name, version, err }, "download cut short");
      stop();
    };

    const sendTo = async (out: ServerResponse, connection: Socket) => {
      try {
        for (;;) {
          if (stopped) throw new Error("download stopped");
          const part = await nextPart();
          if (!part) break;
          // Written as it is, no copy; back to the pool once the socket has taken it. Meanwhile
          // readCheckedChunks goes on reading and checking the chunks after it, but only as far
          // as `parallelism` past the chunk the socket has not taken yet.
          await sendChunk(out, connection, part.bytes, idleTimeoutMs).finally(part.release);
        }
        out.end();
        stop();
      } catch (err) {
        cutShort(err);
        // Destroying the socket mid-body is how the client learns: a short read.
        out.destroy();
      }
    };

    /** A reader that stops pulling would hold the chunks read ahead, and the lease, for ever. */
    const awaitPull = (controller: ReadableStreamDefaultController<Uint8Array>) => {
      idle = setTimeout(() => {
        const stalled = new ClientStalled(`the reader pulled nothing for ${idleTimeoutMs} ms`);
        cutShort(stalled);
        controller.error(stalled);
      }, idleTimeoutMs);
    };
    const stream = () =>
      new ReadableStream<Uint8Array>(
        {
          start: awaitPull,
          async pull(controller) {
            clearTimeout(idle);
            try {
              if (stopped) throw new Error("download stopped");
              const part = await nextPart();
              if (!part) {
                controller.close();
                stop();
                return;
              }
              try {
                // A copy: whoever reads the stream may keep it as long as it likes.
                controller.enqueue(Buffer.from(part.bytes));
              } finally {
                part.release();
              }
              awaitPull(controller);
            } catch (err) {
              cutShort(err);
              // Erroring the stream makes an HTTP server destroy the socket mid-body.
              throw err;
            }
          },
          cancel: stop,
        },
        // No queue of its own: readCheckedChunks already reads and hashes `parallelism` chunks ahead.
        { highWaterMark: 0 },
      );
    return { manifest, status, headers, sendTo, stream, abort: stop };
  } catch (err) {
    release();
    throw err;
  }
}
