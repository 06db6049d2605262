// The caller's address, as the limits and allowlists keyed by client count it (secrets retrieval,
// operator logins, file transfers, failed authentications, usage clients' IP allowlists).
import { isIP } from "node:net";
import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context } from "hono";
import type { AppEnv } from "./context.js";

/** The TCP peer's address; "unknown" without a socket (app.request() in tests). */
function peerAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * The client's address: the TCP peer's, unless the peer is one of TRUSTED_PROXIES (none by
 * default); then the nearest address in X-Forwarded-For that is not a trusted proxy, walking from
 * the right (each proxy appends the address it got the request from; what is left of the trusted
 * hops is the client's own say, and cannot be believed).
 */
export function clientAddress(c: Context<AppEnv>): string {
  const peer = peerAddress(c);
  const trusted = c.get("deps")?.config.TRUSTED_PROXIES;
  if (trusted === undefined || !trusted.contains(peer)) return peer;
  const hops = (c.req.header("X-Forwarded-For") ?? "")
    .split(",")
    .map((hop) => hop.trim())
    .filter((hop) => hop !== "");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (isIP(hop) === 0) return peer;
    if (!trusted.contains(hop)) return hop;
  }
  return hops[0] ?? peer;
}
