// Bull Board over every queue of the registry, served from any working directory. Loaded on
// its first request (dashboards/index.ts): it is a fifth of an idle API's memory, and most
// API replicas never serve it.
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { HonoAdapter } from "@bull-board/hono";
import { serveStatic } from "@hono/node-server/serve-static";
import { Hono } from "hono";
import type { AppDeps } from "../http/context.js";

/** The installed @bull-board/ui package, found from this file rather than from the cwd. */
const bullBoardUiPath = dirname(createRequire(import.meta.url).resolve("@bull-board/ui/package.json"));

/**
 * HonoAdapter hands serveStatic `path.relative(process.cwd(), staticPath)`, and node-server's
 * serveStatic joins that onto whatever the cwd is when a request arrives: started from another
 * directory, or after a chdir, every asset answers 404. The adapter computes that path in the
 * same synchronous call that invokes serveStatic, so resolving it against the cwd right here
 * recovers the absolute path it meant.
 */
const serveStaticFromAbsoluteRoot: typeof serveStatic = (options) =>
  serveStatic({
    ...options,
    ...(options?.root === undefined ? {} : { root: resolve(process.cwd(), options.root) }),
  });

/** An app serving Bull Board under `basePath`. */
export function createBullBoardApp(
  deps: Pick<AppDeps, "queues">,
  basePath: string,
  operatorPagePath: string,
): Hono {
  const serverAdapter = new HonoAdapter(serveStaticFromAbsoluteRoot).setBasePath(basePath);
  createBullBoard({
    // The Queues carry the configured QUEUE_PREFIX, which BullMQAdapter reads from them.
    queues: deps.queues.names.map((name) => new BullMQAdapter(deps.queues.get(name))),
    serverAdapter,
    options: {
      // Bull Board would find it by itself; passing it keeps the views path absolute too.
      uiBasePath: bullBoardUiPath,
      uiConfig: {
        boardTitle: "Conveyor queues",
        miscLinks: [{ text: "Operator dashboard", url: operatorPagePath }],
      },
    },
  });
  return new Hono().route(basePath, serverAdapter.registerPlugin());
}
