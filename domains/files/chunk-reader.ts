// Reads file chunks from the file store straight into the caller's buffers: a second connection
// to the same server as an ioredis client, speaking just enough RESP for GET.
//
// Why not ioredis: it allocates every reply twice before the caller sees it (a buffer per socket
// read, then the parsed reply), so a download of 1 GiB leaves about 2 GiB of dead buffers behind,
// which V8 collects late and glibc keeps: the API's RSS. Here the socket reads into one fixed
// buffer (net's `onread`), and each reply's bytes are copied once, into the pooled chunk buffer
// that will be hashed and sent. Over TLS (no `onread` there) the socket's own buffers are used,
// still without a second copy.
//
// Replies come back in request order on the one connection, so requests pipeline freely. A lost
// connection, or one where a read waits READ_STALL_MS without a byte, fails every request in
// flight (ECONNRESET, ETIMEDOUT: a dependency outage, 503 to a client); the next request
// connects again.
import net from "node:net";
import tls from "node:tls";
import type { Redis } from "ioredis";

const READ_BUFFER_BYTES = 256 * 1024;
/**
 * A read that sees no byte for this long fails its connection: a 10 MB chunk takes milliseconds,
 * and a server stopped without closing its sockets would otherwise hold downloads (and their
 * leases) for as long as TCP keepalive takes to notice, minutes.
 */
const READ_STALL_MS = 30_000;
/** Longer header lines (error messages) are cut to this; anything else is this short. */
const MAX_LINE_BYTES = 4096;
const CR = 13;
const LF = 10;

export interface ChunkReader {
  /**
   * GET `key` into `target`: resolves to the stored value's length, 0 when there is no such key.
   * The bytes are copied into `target` only when that length is target.length (else skipped), and
   * `target` is not touched once the promise has settled.
   */
  read(key: string, target: Buffer): Promise<number>;
  /** Closes the connection; requests in flight fail. */
  close(): void;
}

interface Request {
  /** Where a bulk reply's bytes go; null for AUTH and SELECT. */
  target: Buffer | null;
  resolve(length: number): void;
  reject(err: Error): void;
}

const connectionError = (message: string, code = "ECONNRESET") =>
  Object.assign(new Error(`file store: ${message}`), { code });

const command = (...args: string[]): string =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;

/** One connection and its reply parser. */
class Connection {
  readonly socket: net.Socket;
  private readonly requests: Request[] = [];
  /** Why the connection is unusable, once it is. */
  failed: Error | undefined;
  // Parser state: a header line being read, or `remaining` payload bytes, then `skip` (CRLF).
  private line = "";
  private length = 0;
  private remaining = 0;
  private into: Buffer | null = null;
  private at = 0;
  private skip = 0;

  private connected = false;

  /** `stallMs`: how long a read may wait without a byte arriving before the connection fails. */
  constructor(
    redis: Redis,
    private readonly stallMs: number,
  ) {
    const o = redis.options;
    const readBuffer = o.tls ? undefined : Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const target = o.path
      ? { path: o.path }
      : { host: o.host ?? "127.0.0.1", port: o.port ?? 6379, family: o.family ?? 0 };
    this.socket = o.tls
      ? tls.connect({ ...target, ...o.tls })
      : net.connect({
          ...target,
          onread: {
            buffer: readBuffer as Buffer,
            callback: (n: number, buf: Uint8Array) => {
              this.feed(buf as Buffer, n);
              return true;
            },
          },
        });
    if (o.tls) this.socket.on("data", (b: Buffer) => this.feed(b, b.length));
    this.socket.setNoDelay(true);
    // A server gone without a word (a dead host) is found by TCP keepalive, as ioredis does.
    this.socket.setKeepAlive(true, 30_000);
    // Idle, it keeps no process alive; busy, the server or worker using it does.
    this.socket.unref();
    // One socket timeout: the connect timeout, then the stall deadline while reads wait (a server
    // that hangs without closing the connection fails them, ETIMEDOUT: an outage).
    const connectTimeout = o.connectTimeout ?? 10_000;
    this.socket.setTimeout(connectTimeout);
    this.socket.on("timeout", () =>
      this.fail(
        this.connected
          ? connectionError(`no reply for ${stallMs} ms`, "ETIMEDOUT")
          : connectionError(`no connection after ${connectTimeout} ms`, "ETIMEDOUT"),
      ),
    );
    this.socket.once(o.tls ? "secureConnect" : "connect", () => {
      this.connected = true;
      this.watch();
    });
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("close", () => this.fail(connectionError("connection closed")));
    // A refused AUTH or SELECT fails the connection at once, and so every read on it, with its reason.
    const setUp = (text: string) => {
      const reject = (err: Error) => {
        // A password the server does not ask for: ioredis warns and goes on, and so does this.
        if (!/without any password configured|no password is set/.test(err.message)) this.fail(err);
      };
      this.push({ target: null, resolve: () => {}, reject }, text);
    };
    if (o.password) setUp(command("AUTH", ...(o.username ? [o.username] : []), o.password));
    if (o.db) setUp(command("SELECT", String(o.db)));
  }

  send(text: string, target: Buffer | null): Promise<number> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.push({ target, resolve, reject }, text));
  }

  private push(request: Request, text: string): void {
    this.requests.push(request);
    if (this.requests.length === 1) this.watch();
    this.socket.write(text);
  }

  /** The request whose reply has just been read, out of the queue. */
  private shift(): Request | undefined {
    const request = this.requests.shift();
    if (this.requests.length === 0) this.watch();
    return request;
  }

  /** The stall deadline runs while a read waits (any byte moved restarts it), not while idle. */
  private watch(): void {
    if (this.connected) this.socket.setTimeout(this.requests.length > 0 ? this.stallMs : 0);
  }

  fail(err: Error): void {
    if (!this.failed) this.failed = err;
    this.socket.destroy();
    for (const r of this.requests.splice(0)) r.reject(this.failed);
  }

  /** Parses `n` bytes of `buf`. */
  private feed(buf: Buffer, n: number): void {
    let i = 0;
    while (i < n && !this.failed) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.into) buf.copy(this.into, this.at, i, i + take);
        this.at += take;
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.skip = 2;
      } else if (this.skip > 0) {
        // The CRLF after a payload: anything else means the parser is out of step.
        if (buf[i] !== (this.skip === 2 ? CR : LF)) {
          this.fail(connectionError("reply out of step"));
          return;
        }
        this.skip--;
        i++;
        if (this.skip === 0) this.settle(this.length);
      } else {
        let end = i;
        while (end < n && buf[end] !== LF) end++;
        if (this.line.length < MAX_LINE_BYTES) this.line += buf.toString("latin1", i, end);
        i = end;
        if (end < n) {
          i++;
          const line = this.line.endsWith("\r") ? this.line.slice(0, -1) : this.line;
          this.line = "";
          this.header(line);
        }
      }
    }
  }

  private header(line: string): void {
    const kind = line[0];
    const rest = line.slice(1);
    const length = Number(rest);
    if (kind === "+") this.settle(0);
    else if (kind === "-") this.shift()?.reject(new Error(`file store: ${rest}`));
    else if (kind === "$" && length === -1) this.settle(0);
    else if (kind === "$" && Number.isSafeInteger(length) && length >= 0) {
      const target = this.requests[0]?.target ?? null;
      this.length = length;
      this.into = target && target.length === length ? target : null;
      this.at = 0;
      this.remaining = length;
      if (length === 0) this.skip = 2;
    } else {
      // Not quoted: after a desync the line may be a file's bytes, which never go to a log.
      this.fail(connectionError(`unexpected reply (${line.length} bytes, not RESP2 status, error or bulk)`));
    }
  }

  private settle(length: number): void {
    this.into = null;
    this.shift()?.resolve(length);
  }
}

/**
 * A reader on the server (and database, credentials, TLS, key prefix) `redis` is configured for;
 * the files service makes one and closes it at shutdown. `stallMs`:
 * how long a read may wait without a byte arriving before its connection fails (ETIMEDOUT).
 */
export function createChunkReader(redis: Redis, { stallMs = READ_STALL_MS } = {}): ChunkReader {
  let connection: Connection | undefined;
  const keyPrefix = redis.options.keyPrefix ?? "";
  return {
    read(key, target) {
      // A failed connection is replaced at once: an outage answers fast, a recovery is seen fast.
      if (!connection || connection.failed) connection = new Connection(redis, stallMs);
      return connection.send(command("GET", keyPrefix + key), target);
    },
    close() {
      connection?.fail(connectionError("reader closed"));
      connection = undefined;
    },
  };
}
