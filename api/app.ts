// createApp(deps): the whole HTTP surface of Conveyor, built from dependencies passed in,
// so tests can build an app against their own database and queue prefix.

import type { IncomingMessage } from "node:http";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { mountDashboards } from "../dashboards/index.js";
import { authorize, PUBLIC } from "../http/access.js";
import type { AppDeps, AppEnv } from "../http/context.js";
import { healthRoutes } from "../http/health.routes.js";
import { createMetrics } from "../http/metrics.js";
import { installRequestContext } from "../http/request-context.js";
import { AppError } from "../lib/errors.js";
import { validationHook } from "./openapi.js";
import { alertsRoutes } from "./routes/alerts.js";
import { filesRoutes, isFileUpload } from "./routes/files.js";
import { identityRoutes } from "./routes/identity.js";
import { jobsRoutes } from "./routes/jobs.js";
import { notificationsRoutes } from "./routes/notifications.js";
import { isSecretStore, secretsRoutes } from "./routes/secrets.js";
import { usageRoutes } from "./routes/usage.js";
import { webhooksRoutes } from "./routes/webhooks.js";
import { mountSwaggerUi } from "./swagger-ui.js";

export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  const metrics = createMetrics(deps.queues, deps.redis, () => deps.services.usage.spooledHits());

  installRequestContext(app, deps, metrics);
  const limit = deps.config.BODY_LIMIT_BYTES;
  const limitBody = bodyLimit({
    maxSize: limit,
    onError: () => {
      throw tooLarge(limit);
    },
  });
  app.use(async (c, next) => {
    const method = c.req.method;
    // No body to limit (and hono's bodyLimit would build a whole WHATWG Request to find that out).
    if (method === "GET" || method === "HEAD") return next();
    // File uploads stream to the file store under their own limit (FILE_MAX_BYTES); a secret's
    // store has its own too (SECRETS_MAX_VALUE_BYTES plus room for the id and key).
    if (isFileUpload(method, c.req.path) || isSecretStore(method, c.req.path)) return next();
    // JSON bodies are read straight from Node's request, within the limit, into Hono's body cache
    // (which c.req.json() and the validators read): through @hono/node-server's Request instead,
    // each one costs an undici Request, an AbortController and a web ReadableStream.
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const type = incoming?.headers["content-type"];
    if (!incoming || !type || !JSON_TYPE.test(type)) return limitBody(c, next);
    const body = await readBody(incoming, limit);
    (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(body.toString("utf8"));
    return next();
  });

  app.route("/", healthRoutes(metrics));
  app.route("/", identityRoutes);
  app.route("/", jobsRoutes);
  app.route("/", notificationsRoutes);
  app.route("/", webhooksRoutes);
  app.route("/", alertsRoutes);
  app.route("/", filesRoutes);
  app.route("/", secretsRoutes);
  app.route("/", usageRoutes);

  app.openAPIRegistry.registerComponent("securitySchemes", "apiKey", {
    type: "apiKey",
    in: "header",
    name: "X-API-Key",
    description:
      "An API key (cvy_…), shown once when it was created. Also accepted as `Authorization: Bearer`.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "An access token from POST /v1/tokens (or an API key).",
  });
  app.use("/openapi.json", authorize(PUBLIC));
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Conveyor",
      version: "0.1.0",
      description:
        "A job-processing platform: submissions answer 202 with a job; GET /v1/jobs/{queue}/{id} tracks it.",
    },
  });
  mountSwaggerUi(app, "/openapi.json");

  if (deps.dashboards !== false) mountDashboards(app, deps);
  return app;
}

export type App = ReturnType<typeof createApp>;

const JSON_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i;

const tooLarge = (limit: number) =>
  new AppError("PAYLOAD_TOO_LARGE", `request body is larger than ${limit} bytes`);

/** The whole body of a Node request, or PAYLOAD_TOO_LARGE as soon as it passes `limit` bytes. */
function readBody(incoming: IncomingMessage, limit: number): Promise<Buffer> {
  if (Number(incoming.headers["content-length"]) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onError);
      incoming.off("close", onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) return void chunks.push(chunk);
      done();
      incoming.resume(); // read and discard the rest
      reject(tooLarge(limit));
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => {
      done();
      reject(new Error("request closed before its body was read"));
    };
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onError);
    incoming.on("close", onClose);
  });
}
