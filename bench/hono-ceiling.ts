// The Hono POST ceiling of bench/usage.bench.ts: a trivial Hono app on @hono/node-server, as the
// API serves (same keep-alive timeout), that parses the JSON body of POST /api/logs and answers
// 202 — no authentication, no limits, no Redis. Started as a child with PORT set; stops on SIGTERM.
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { Hono } from "hono";

const app = new Hono();
app.post("/api/logs", async (c) => {
  await c.req.json();
  return c.json({ accepted: 1 }, 202);
});
app.get("/ready", (c) => c.text("ok"));

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: "127.0.0.1" }) as Server;
server.keepAliveTimeout = 65_000;
const stop = () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
