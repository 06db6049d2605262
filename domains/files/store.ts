// The in-memory file store (FILE_STORE_URL, Valkey/Redis without persistence): manifests and
// chunks of stored files. Shared by the API, which streams bytes in and out, and the
// `chunk-hashing` worker, which verifies them at rest. File bytes live here and nowhere else.
//
// Names are per tenant (an account, or the anonymous tenant): each tenant's manifests and leases
// live under a namespace of its own, so one tenant's listing, reads, overwrites and deletes never
// reach another's. Keys, under `${QUEUE_PREFIX}:files:`; the tenant is URI-encoded (no ":"), and
// the m:/c:/r: namespaces keep a name that contains ":" from ever colliding with another key.
//   t:{tenant}:m:{name}  hash: the manifest of the name's current version (see FileManifest)
//   t:{tenant}:r:{name}  sorted set: read leases "{version}|{leaseId}", scored by expiry (server ms)
//   c:{version}:{i}   string: chunk i of one version, raw bytes; versions are random, never reused
//   q:total, q:sizes, q:expiry   the bytes stored (FILE_STORE_MAX_BYTES): their sum, each
//                     version's bytes (hash), each version's expiry (sorted set, ms)
// Every key expires: a version's chunks and its manifest at the same instant (PXAT/PEXPIREAT
// at the file's expiresAt), a lease set one lease period after its last renewal, the q: keys
// with the last version they count.
//
// Overwrite: an upload writes its chunks under a new version, then switches the manifest in one
// script (readers see the old version or the new one, never a mixture). The old version's
// chunks are deleted right away unless a download still holds a lease on them; then the last
// such reader deletes them when it finishes (or the TTL does, if that reader died).
import type { Writable } from "node:stream";
import { Command, type Redis } from "ioredis";
import { randomId } from "../../lib/ids.js";
import { scanKeys } from "../../lib/redis.js";
import type { ChunkReader } from "./chunk-reader.js";
import type { TransferBuffers } from "./memory-budget.js";
import type { Sha1Pool } from "./sha1-pool.js";

export type FileState = "pending" | "verified" | "corrupted";

export interface FileManifest {
  name: string;
  version: string;
  size: number;
  sha1: string;
  chunkSize: number;
  chunks: number;
  /** SHA-1 (hex) of each chunk, in order. */
  chunkSha1: string[];
  state: FileState;
  /** Why the file is corrupted, when it is. */
  stateReason: string | null;
  createdAt: string;
  expiresAt: string;
  /** When a verification last changed the state. */
  checkedAt: string | null;
}

export interface FileStoreSettings {
  chunkSize: number;
  parallelism: number;
  ttlSeconds: number;
  maxBytes: number;
  /** FILE_STORE_MAX_BYTES: bytes of chunks the store may hold in all; 0 for no limit. */
  storeMaxBytes: number;
  /** FILE_IDLE_TIMEOUT_MS: a transfer whose client moves no byte for this long ends. */
  idleTimeoutMs: number;
  /** How long a download's read lease lasts without renewal (renewed every third of it). */
  leaseMs: number;
}

export const fileKeyPrefix = (queuePrefix: string): string => `${queuePrefix}:files:`;

const HEX_SHA1 = 40;

/** A new version id: random, so a version's chunk keys are never written twice. */
export const newVersion = (): string => randomId("v");

/**
 * Why `name` cannot be a file name (1–255 bytes of UTF-8, no "/", no control characters), or
 * undefined when it can.
 */
export function fileNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, "utf8");
  if (bytes < 1 || bytes > 255) return `must be 1-255 bytes (is ${bytes})`;
  if (name.includes("/")) return "must not contain /";
  if (/\p{Cc}/u.test(name)) return "must not contain control characters";
  return undefined;
}

/** The length chunk `index` must have. */
export const chunkLength = (m: Pick<FileManifest, "size" | "chunkSize" | "chunks">, index: number): number =>
  index < m.chunks - 1 ? m.chunkSize : m.size - m.chunkSize * (m.chunks - 1);

/** What is wrong with chunk `index`, stored with `length` bytes (0: missing), before hashing it. */
function chunkShapeProblem(m: FileManifest, index: number, length: number): string | undefined {
  if (length === 0) return `chunk ${index} of ${m.chunks} is missing`;
  const expected = chunkLength(m, index);
  if (length !== expected) return `chunk ${index} of ${m.chunks} has ${length} bytes, expected ${expected}`;
  return undefined;
}

const hashProblem = (m: FileManifest, index: number, actual: string) =>
  actual === m.chunkSha1[index]
    ? undefined
    : `chunk ${index} of ${m.chunks} fails its SHA-1 check (expected ${m.chunkSha1[index]}, got ${actual})`;

// Manifest hash fields, as stored.
const FIELDS = [
  "name",
  "version",
  "size",
  "sha1",
  "chunkSize",
  "chunks",
  "chunkSha1",
  "state",
  "stateReason",
  "createdAt",
  "expiresAt",
  "checkedAt",
] as const;

function toFields(m: FileManifest): string[] {
  return [
    "name",
    m.name,
    "version",
    m.version,
    "size",
    String(m.size),
    "sha1",
    m.sha1,
    "chunkSize",
    String(m.chunkSize),
    "chunks",
    String(m.chunks),
    // One string, not a field per chunk: an 8 GiB file in 1 MiB chunks is 8192 hashes.
    "chunkSha1",
    m.chunkSha1.join(""),
    "state",
    m.state,
    "stateReason",
    m.stateReason ?? "",
    "createdAt",
    m.createdAt,
    "expiresAt",
    m.expiresAt,
    "checkedAt",
    m.checkedAt ?? "",
  ];
}

function fromFields(h: Record<string, string>): FileManifest | null {
  if (!h.version || !h.name) return null;
  const hashes = h.chunkSha1 ?? "";
  const chunkSha1: string[] = [];
  for (let i = 0; i < hashes.length; i += HEX_SHA1) chunkSha1.push(hashes.slice(i, i + HEX_SHA1));
  return {
    name: h.name,
    version: h.version,
    size: Number(h.size),
    sha1: h.sha1 ?? "",
    chunkSize: Number(h.chunkSize),
    chunks: Number(h.chunks),
    chunkSha1,
    state: (h.state as FileState | undefined) ?? "pending",
    stateReason: h.stateReason || null,
    createdAt: h.createdAt ?? "",
    expiresAt: h.expiresAt ?? "",
    checkedAt: h.checkedAt || null,
  };
}

const pairsToRecord = (flat: string[]): Record<string, string> => {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
};

// Server time in ms, so leases mean the same on every API replica whatever its clock.
const LUA_NOW =
  "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";

// KEYS: manifest. ARGV: expiresAtMs, field, value, … → the replaced {version, chunks} (nils if none).
const COMMIT = `
local old = redis.call('HMGET', KEYS[1], 'version', 'chunks')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return old`;

// KEYS: manifest, leases. ARGV: leaseId, leaseMs → the manifest (flat field list; empty if none),
// with a read lease on its version taken in the same step, so a switch cannot slip in between.
const OPEN = `
local m = redis.call('HGETALL', KEYS[1])
if #m == 0 then return m end
${LUA_NOW}
local version = redis.call('HGET', KEYS[1], 'version')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), version .. '|' .. ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return m`;

// KEYS: leases. ARGV: member, leaseMs → 1 when the lease was still held.
const RENEW = `
${LUA_NOW}
local renewed = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return renewed`;

// The bytes a version counts against FILE_STORE_MAX_BYTES, forgotten (its chunks are deleted or
// expired). `k`: the index of q:total in KEYS, q:sizes and q:expiry after it.
const luaForget = (k: number, version: string) => `
local size = redis.call('HGET', KEYS[${k + 1}], ${version})
if size then
  -- Nothing counted, no key left.
  if redis.call('DECRBY', KEYS[${k}], size) <= 0 then redis.call('DEL', KEYS[${k}]) end
  redis.call('HDEL', KEYS[${k + 1}], ${version})
  redis.call('ZREM', KEYS[${k + 2}], ${version})
end`;

// KEYS: manifest, leases, q:total, q:sizes, q:expiry. ARGV: version, member to release ('' for
// none) → 1 when nobody can read `version` any more (not current, no live lease): its bytes are
// forgotten here, and the caller deletes its chunks.
const RETIRE = `
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
${LUA_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('HGET', KEYS[1], 'version') == ARGV[1] then return 0 end
local prefix = ARGV[1] .. '|'
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then return 0 end
end
${luaForget(3, "ARGV[1]")}
return 1`;

// KEYS: q:total, q:sizes, q:expiry. ARGV: version ('' to only look), bytes, expiresAtMs, maxBytes
// (0: no limit) → {1 when `bytes` more fit (and are now counted for `version`), 0 when not; the
// bytes counted}. Versions whose expiry has passed are forgotten first: their chunks are gone.
const COUNT_BYTES = `
${LUA_NOW}
for _, expired in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)) do
  ${luaForget(1, "expired")}
end
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local max = tonumber(ARGV[4])
if max > 0 and total + tonumber(ARGV[2]) > max then return {0, total} end
if ARGV[1] == '' then return {1, total} end
total = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
for i = 1, 3 do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 or now + ttl < tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[i], ARGV[3]) end
end
return {1, total}`;

// KEYS: q:total, q:sizes, q:expiry. ARGV: version.
const FORGET_BYTES = luaForget(1, "ARGV[1]");

// KEYS: manifest. ARGV: version, state, reason, checkedAt → 1 when changed. Only the version the
// caller checked is touched, and a corrupted file stays corrupted: its bytes were seen wrong.
const SET_STATE = `
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'corrupted' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'stateReason', ARGV[3], 'checkedAt', ARGV[4])
return 1`;

// KEYS: manifest → the removed {version, chunks} (nils if none).
const REMOVE = `
local old = redis.call('HMGET', KEYS[1], 'version', 'chunks')
redis.call('DEL', KEYS[1])
return old`;

/**
 * A command whose Buffer arguments are written to the socket as they are. ioredis' own
 * Command.toWritable first copies the whole command into one new buffer: for a chunk, a
 * chunk-sized allocation per write, which V8 frees late and the allocator keeps (the API's RSS).
 * Only for commands sent on their own with redis.sendCommand (not in a pipeline or MULTI, which
 * need the command as one piece). Redis replies after it has read every byte, so a buffer may be
 * reused once its command has settled.
 */
class UncopiedCommand extends Command {
  override toWritable(socket: object): string {
    const out = socket as Writable;
    let pending = `*${this.args.length + 1}\r\n$${Buffer.byteLength(this.name)}\r\n${this.name}\r\n`;
    for (const arg of this.args) {
      if (Buffer.isBuffer(arg) && arg.length > 0) {
        out.write(`${pending}$${arg.length}\r\n`);
        out.write(arg);
        pending = "\r\n";
      } else {
        const text = Buffer.isBuffer(arg) ? "" : String(arg);
        pending += `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
      }
    }
    // ioredis writes what is returned, right after this.
    return pending;
  }
}

/** Escapes Redis glob characters, so a key prefix matches only itself in SCAN MATCH. */
const globEscape = (s: string) => s.replace(/[*?[\]\\]/g, "\\$&");

/** One tenant's view of the store: its own names; the bytes limit and the chunks are shared. */
export type FileStore = ReturnType<ReturnType<typeof createFileStore>["forTenant"]>;

/**
 * The store over `redis` (ioredis: writes, manifests, scripts) and `reader` (chunk reads straight
 * into `pool`'s buffers, hashed on `pool`'s threads), with keys under `keyPrefix`; `forTenant`
 * gives one tenant's names.
 */
export function createFileStore(opts: FileStoreOptions) {
  const quota = storeQuota(opts);
  return {
    forTenant: (tenant: string) => tenantFileStore(opts, quota, tenant),
    /** Bytes of chunks counted now, every tenant's (those of uploads under way included). */
    storedBytes: async () => (await quota.countBytes("", 0, 0)).storedBytes,
  };
}

interface FileStoreOptions {
  redis: Redis;
  reader: ChunkReader;
  pool: Sha1Pool;
  keyPrefix: string;
  settings: FileStoreSettings;
}

/** The bytes stored against FILE_STORE_MAX_BYTES: one count for the whole store. */
function storeQuota({ redis, keyPrefix, settings }: FileStoreOptions) {
  const keys = [`${keyPrefix}q:total`, `${keyPrefix}q:sizes`, `${keyPrefix}q:expiry`] as const;
  /** COUNT_BYTES: whether `bytes` more fit under FILE_STORE_MAX_BYTES, counted for `version` if given. */
  const countBytes = async (version: string, bytes: number, expiresAtMs: number) => {
    const [fits, stored] = (await redis.eval(
      COUNT_BYTES,
      3,
      ...keys,
      version,
      String(bytes),
      String(expiresAtMs),
      String(settings.storeMaxBytes),
    )) as [number, number];
    return { fits: fits === 1, storedBytes: stored };
  };
  return { keys, countBytes };
}

function tenantFileStore(opts: FileStoreOptions, quota: ReturnType<typeof storeQuota>, tenant: string) {
  const { redis, reader, pool, keyPrefix, settings } = opts;
  const { countBytes } = quota;
  const names = `${keyPrefix}t:${encodeURIComponent(tenant)}:`;
  const keys = {
    manifest: (name: string) => `${names}m:${name}`,
    chunk: (version: string, index: number) => `${keyPrefix}c:${version}:${index}`,
    leases: (name: string) => `${names}r:${name}`,
    quota: quota.keys,
  };

  const previousOf = (old: unknown): { version: string; chunks: number } | null => {
    const [version, chunks] = old as [string | null, string | null];
    return version ? { version, chunks: Number(chunks ?? 0) } : null;
  };

  const store = {
    redis,
    pool,
    settings,
    keys,
    tenant,

    /** SET … PXAT; `bytes` go to the socket uncopied: reuse them only once this has settled. */
    writeChunk(version: string, index: number, bytes: Buffer, expiresAtMs: number): Promise<unknown> {
      const command = new UncopiedCommand(
        "set",
        [keys.chunk(version, index), bytes, "PXAT", String(expiresAtMs)],
        { keyPrefix: redis.options.keyPrefix, replyEncoding: "utf8" },
      );
      return redis.sendCommand(command) as Promise<unknown>;
    },

    /**
     * Reads a chunk straight into `target` (chunk-reader.ts); resolves to its stored length,
     * 0 when it is missing. The bytes are there only when that length is target.length.
     */
    readChunk(version: string, index: number, target: Buffer): Promise<number> {
      return reader.read(keys.chunk(version, index), target);
    },

    /**
     * Counts `bytes` more of `version` (expiring at `expiresAtMs`) against FILE_STORE_MAX_BYTES;
     * counts nothing when they do not fit.
     */
    countBytes: (version: string, bytes: number, expiresAtMs: number) =>
      countBytes(version, bytes, expiresAtMs),

    /** Whether `bytes` more would fit under FILE_STORE_MAX_BYTES now; counts nothing. */
    roomFor: (bytes: number) => countBytes("", bytes, 0),

    /** Stops counting a version's bytes: its chunks are deleted (a failed upload). */
    async forgetBytes(version: string): Promise<void> {
      await redis.eval(FORGET_BYTES, 3, ...keys.quota, version);
    },

    /** Deletes chunks 0…count-1 of a version (UNLINK: the memory is freed off the main thread). */
    async deleteChunks(version: string, count: number): Promise<void> {
      for (let from = 0; from < count; from += 1000) {
        const batch: string[] = [];
        for (let i = from; i < Math.min(count, from + 1000); i++) batch.push(keys.chunk(version, i));
        await redis.unlink(...batch);
      }
    },

    /** Makes `m` the current version of its name, in one step; returns the version it replaced. */
    async commit(m: FileManifest, expiresAtMs: number) {
      const old = await redis.eval(COMMIT, 1, keys.manifest(m.name), String(expiresAtMs), ...toFields(m));
      return previousOf(old);
    },

    /** The current manifest, without a lease (HEAD, listing, verification). */
    async head(name: string): Promise<FileManifest | null> {
      return fromFields(await redis.hgetall(keys.manifest(name)));
    },

    /** The current manifest with a read lease on its version: its chunks stay until release. */
    async openForRead(name: string, leaseId: string): Promise<FileManifest | null> {
      const flat = (await redis.eval(
        OPEN,
        2,
        keys.manifest(name),
        keys.leases(name),
        leaseId,
        String(settings.leaseMs),
      )) as string[];
      return fromFields(pairsToRecord(flat));
    },

    async renewLease(name: string, version: string, leaseId: string): Promise<void> {
      await redis.eval(RENEW, 1, keys.leases(name), `${version}|${leaseId}`, String(settings.leaseMs));
    },

    /**
     * Deletes a version's chunks when nobody can read it any more: not current, no live lease; its
     * bytes no longer count. `leaseId` releases that lease first (a download finishing).
     */
    async retire(name: string, version: string, chunks: number, leaseId?: string): Promise<boolean> {
      const gone = await redis.eval(
        RETIRE,
        5,
        keys.manifest(name),
        keys.leases(name),
        ...keys.quota,
        version,
        leaseId === undefined ? "" : `${version}|${leaseId}`,
      );
      if (gone === 1) await store.deleteChunks(version, chunks);
      return gone === 1;
    },

    /** Records a verification outcome, if `version` is still the current one. */
    async setState(name: string, version: string, state: FileState, reason = ""): Promise<boolean> {
      const changed = await redis.eval(
        SET_STATE,
        1,
        keys.manifest(name),
        version,
        state,
        reason,
        new Date().toISOString(),
      );
      return changed === 1;
    },

    /** Removes a name; its chunks go as soon as no download reads them. False when unknown. */
    async remove(name: string): Promise<boolean> {
      const old = previousOf(await redis.eval(REMOVE, 1, keys.manifest(name)));
      if (!old) return false;
      await store.retire(name, old.version, old.chunks);
      return true;
    },

    /** Every file of this tenant: its manifest (without the per-chunk hashes), by name. */
    async list(): Promise<Omit<FileManifest, "chunkSha1">[]> {
      const listed = FIELDS.filter((f) => f !== "chunkSha1");
      const out: Omit<FileManifest, "chunkSha1">[] = [];
      for await (const found of scanKeys(redis, `${globEscape(names)}m:*`, 500)) {
        const pipeline = redis.pipeline();
        for (const key of found) pipeline.hmget(key, ...listed);
        for (const [err, values] of (await pipeline.exec()) ?? []) {
          if (err) throw err;
          const record: Record<string, string> = {};
          listed.forEach((field, i) => {
            const value = (values as (string | null)[])[i];
            if (value !== null && value !== undefined) record[field] = value;
          });
          const m = fromFields(record);
          if (m) {
            const { chunkSha1: _omit, ...rest } = m;
            out.push(rest);
          }
        }
      }
      return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },
  };
  return store;
}

export interface CheckedChunk {
  index: number;
  /** The chunk's bytes when it passed its checks, else null: pooled, the consumer's until release(). */
  bytes: Buffer | null;
  /** What is wrong with it: missing, wrong length, wrong SHA-1, or (last chunk) a wrong whole-file SHA-1. */
  problem?: string;
  /** Gives `bytes` back to the pool, once nothing reads them any more (a socket write, say). */
  release(): void;
}

/**
 * Chunks `from`…`to` of a manifest's version, in order, each checked against its SHA-1 before
 * it is yielded. Up to `parallelism` chunks are read and hashed ahead of the consumer, as far as
 * `buffers` allow, and only as the consumer asks for more: a chunk is read once the consumer has
 * given back the one `parallelism` before it. Each is read straight into one of `buffers`
 * (pooled, shared: chunk-reader.ts) and hashed there on a worker thread (sha1-pool.ts), so a
 * chunk's bytes are copied once on their way in and the buffers are reused rather than left to
 * the garbage collector. With `whole`, the whole-file SHA-1 is checked too, before the last
 * chunk is yielded, so a consumer never passes on a byte that has not been checked. A store
 * error is thrown at its chunk's turn. The consumer releases each chunk before asking for the
 * next one: with one buffer to spare, the next read waits for it.
 */
export async function* readCheckedChunks(
  store: Pick<FileStore, "readChunk" | "pool">,
  m: FileManifest,
  range: { from: number; to: number; whole: boolean; parallelism: number; buffers: TransferBuffers },
): AsyncGenerator<CheckedChunk> {
  const { pool } = store;
  const { buffers } = range;
  const session = pool.openSession({ whole: range.whole });
  let finished = false;
  // Chunks reach the hashing thread one after the other, in file order: the whole-file SHA-1
  // needs it. `fed` settles once the previous chunk has been handed over.
  let fed: Promise<unknown> = Promise.resolve();
  const failed = (index: number, problem: string): CheckedChunk => ({
    index,
    bytes: null,
    problem,
    release: () => {},
  });
  const check = (index: number, bytes: Buffer): Promise<CheckedChunk> => {
    // Every read at once: they pipeline on the reader's connection, replies in order.
    const read = store.readChunk(m.version, index, bytes);
    const turn = fed;
    let handedOver = () => {};
    fed = new Promise<void>((resolve) => {
      handedOver = resolve;
    });
    const checked = (async (): Promise<CheckedChunk> => {
      let hashed: Promise<string> | undefined;
      let passed = false;
      try {
        const shape = chunkShapeProblem(m, index, await read);
        if (shape) return failed(index, shape);
        await turn;
        hashed = session.chunk(bytes);
        handedOver();
        const problem = hashProblem(m, index, await hashed);
        if (problem) return failed(index, problem);
        passed = true;
        return { index, bytes, release: () => buffers.release(bytes) };
      } finally {
        handedOver();
        // The read has settled here (the store no longer writes into the buffer); a hash may not have.
        if (!passed) void Promise.allSettled([hashed]).then(() => buffers.release(bytes));
      }
    })();
    checked.catch(() => {});
    return checked;
  };
  const window: Promise<CheckedChunk>[] = [];
  let next = range.from;
  try {
    while (next <= range.to || window.length > 0) {
      // As far ahead as the transfer's buffers allow: when the budget lends none, one of its own
      // comes back from the consumer.
      while (window.length < range.parallelism && next <= range.to) {
        const size = chunkLength(m, next);
        const bytes = window.length === 0 ? await buffers.acquire(size) : buffers.tryAcquire(size);
        if (!bytes) break;
        window.push(check(next++, bytes));
      }
      const item = await (window.shift() as Promise<CheckedChunk>);
      if (item.problem) {
        yield item;
        return;
      }
      if (item.index === range.to && range.whole) {
        finished = true;
        const sha1 = await session.finish();
        if (sha1 !== m.sha1) {
          item.release();
          yield failed(item.index, `whole-file SHA-1 is ${sha1}, expected ${m.sha1}`);
          return;
        }
      }
      yield item;
    }
  } finally {
    // Chunks read ahead that nobody will consume give their buffers back once settled.
    for (const ahead of window)
      ahead.then(
        (item) => item.release(),
        () => {},
      );
    if (!finished) session.drop();
  }
}
