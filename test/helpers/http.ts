// An app served over real HTTP, as @hono/node-server serves it in production: for tests where
// sockets matter (streaming, disconnects, Node's request read directly, a browser).
// Also readEvents: the events of a Server-Sent Events answer, as a client reads them.
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { expect } from "vitest";

export interface ServedApp {
  port: number;
  /** http://127.0.0.1:{port} */
  url: string;
  /** Stops listening and cuts every open connection. */
  close(): Promise<void>;
}

/** Serves `app` on 127.0.0.1 and a free port. */
export function serveApp(app: { fetch: (request: Request, env?: unknown) => Response | Promise<Response> }) {
  return new Promise<ServedApp>((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
      resolve({
        port: info.port,
        url: `http://127.0.0.1:${info.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    }) as Server;
  });
}

/**
 * The bindings @hono/node-server would give a request from `address`, for `app.request(path, init,
 * peer(address))`: per-address limits can then be tested without a socket per caller. Only the
 * peer is set (getConnInfo reads `server.incoming.socket`); the app still reads the body itself.
 */
export const peer = (address: string) => ({ server: { incoming: { socket: { remoteAddress: address } } } });

export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/** Reads server-sent events from `res` until `done` says so (or `timeoutMs`), then closes it. */
export async function readEvents(res: Response, done: (events: SseEvent[]) => boolean, timeoutMs = 10_000) {
  expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (!done(events) && Date.now() < deadline) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), Math.max(1, deadline - Date.now()))),
      ]);
      if (!chunk || chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
      let end = text.indexOf("\n\n");
      while (end >= 0) {
        const event: SseEvent = { data: "" };
        for (const line of text.slice(0, end).split("\n")) {
          const colon = line.indexOf(":");
          const [field, value] = [line.slice(0, colon), line.slice(colon + 1).trimStart()];
          if (field === "id") event.id = value;
          else if (field === "event") event.event = value;
          else if (field === "data") event.data += value;
        }
        events.push(event);
        text = text.slice(end + 2);
        end = text.indexOf("\n\n");
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return events;
}
