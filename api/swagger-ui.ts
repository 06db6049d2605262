// Swagger UI at /docs, with its script and stylesheet served from the swagger-ui-dist package
// rather than a CDN: the page works on a machine (or a network) without internet access.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { swaggerUI } from "@hono/swagger-ui";
import type { Hono } from "hono";
import { authorize, PUBLIC } from "../http/access.js";
import type { AppEnv } from "../http/context.js";

const ASSETS_BASE = "/docs/assets";
// @hono/swagger-ui asks for these two, under `${baseUrl}/swagger-ui-dist/`.
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
};

export function mountSwaggerUi(app: Hono<AppEnv>, openApiUrl: string): void {
  const packageDir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  // Read on first request (1.5 MB), then kept: the files never change while the process runs.
  const cache = new Map<string, Promise<Buffer>>();
  app.use("/docs/*", authorize(PUBLIC));
  app.get("/docs", swaggerUI({ url: openApiUrl, baseUrl: ASSETS_BASE, title: "Conveyor API" }));
  app.get(`${ASSETS_BASE}/swagger-ui-dist/:file`, async (c) => {
    const file = c.req.param("file");
    const type = ASSETS[file];
    if (type === undefined) return c.notFound();
    let bytes = cache.get(file);
    if (!bytes) {
      bytes = readFile(join(packageDir, file));
      bytes.catch(() => cache.delete(file));
      cache.set(file, bytes);
    }
    return c.body(new Uint8Array(await bytes), 200, {
      "Content-Type": type,
      "Cache-Control": "public, max-age=86400",
    });
  });
}
