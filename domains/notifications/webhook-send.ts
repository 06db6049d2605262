// Standard Webhooks on the wire: secrets (`whsec_` + base64 of 24 random bytes), the signature
// (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per active secret, space-separated)
// and one POST to a pinned address: the connection goes to the address the SSRF check passed,
// with the URL's host as Host header and TLS server name. No redirect is followed.
import { createHmac, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP, type LookupFunction } from "node:net";

export const SECRET_PREFIX = "whsec_";
const SECRET_BYTES = 24;

export const generateSecret = (): string => `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString("base64")}`;

/** `v1,<signature>` of one message under one secret. */
export function signature(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

/** The three Standard Webhooks headers, signed by every secret in `secrets`. */
export const webhookHeaders = (
  secrets: readonly string[],
  id: string,
  timestamp: number,
  body: string,
): Record<string, string> => ({
  "webhook-id": id,
  "webhook-timestamp": String(timestamp),
  "webhook-signature": secrets.map((s) => signature(s, id, timestamp, body)).join(" "),
});

export const RESPONSE_EXCERPT_BYTES = 1_024;
export const SEND_TIMEOUT_MS = 10_000;

export type SendResult =
  | { status: number; excerpt: string; durationMs: number }
  | { status: null; error: string; durationMs: number };

/** POSTs `body` to `url`, connecting to `address` whatever the host resolves to now. */
export function send(
  url: URL,
  address: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs = SEND_TIMEOUT_MS,
): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const family = isIP(address) === 6 ? 6 : 4;
  // Whatever the host resolves to now, the socket goes to the address that was checked. Node asks
  // with `all: true` when it tries addresses in turn (autoSelectFamily): then it wants a list.
  const pinned: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all)
      (callback as unknown as (err: null, all: { address: string; family: number }[]) => void)(null, [
        { address, family },
      ]);
    else callback(null, address, family);
  };
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: SendResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = request(
      url,
      {
        method: "POST",
        lookup: pinned,
        agent: false,
        headers: {
          ...headers,
          "content-type": "application/json",
          "content-length": String(Buffer.byteLength(body)),
          "user-agent": "conveyor-webhooks/1",
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let kept = 0;
        res.on("data", (chunk: Buffer) => {
          if (kept < RESPONSE_EXCERPT_BYTES) {
            chunks.push(chunk.subarray(0, RESPONSE_EXCERPT_BYTES - kept));
            kept += Math.min(chunk.length, RESPONSE_EXCERPT_BYTES - kept);
          } else res.destroy();
        });
        const end = () =>
          finish({
            status: res.statusCode ?? 0,
            excerpt: Buffer.concat(chunks).toString("utf8").replaceAll("\0", ""),
            durationMs: elapsed(),
          });
        res.on("end", end);
        res.on("close", end);
        res.on("error", end);
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("error", (err) => finish({ status: null, error: err.message, durationMs: elapsed() }));
    req.end(body);
  });
}
