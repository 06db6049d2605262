// The caller's address, as the limits keyed by client count it (secrets retrieval, operator logins,
// file transfers).
import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context } from "hono";

/**
 * The TCP peer's address. X-Forwarded-For is not trusted: behind a proxy every client shares the
 * proxy's address, and its budgets.
 */
export function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "unknown";
  } catch {
    // app.request() in tests has no socket.
    return "unknown";
  }
}
