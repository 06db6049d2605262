// An app served over real HTTP, as @hono/node-server serves it in production: for tests where
// sockets matter (streaming, disconnects, Node's request read directly, a browser).
import type { Server } from "node:http";
import { serve } from "@hono/node-server";

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
