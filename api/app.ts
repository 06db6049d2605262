// createApp(deps): the whole HTTP surface of Conveyor, built from dependencies passed in,
// so tests can build an app against their own database and queue prefix.

import { swaggerUI } from "@hono/swagger-ui";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { mountDashboards } from "../dashboards/index.js";
import { AppError } from "../lib/errors.js";
import type { AppDeps, AppEnv } from "./context.js";
import { createMetrics } from "./metrics.js";
import { validationHook } from "./openapi.js";
import { installRequestContext } from "./request-context.js";
import { alertsRoutes } from "./routes/alerts.js";
import { filesRoutes, isFileUpload } from "./routes/files.js";
import { healthRoutes } from "./routes/health.js";
import { jobsRoutes } from "./routes/jobs.js";
import { isSecretStore, secretsRoutes } from "./routes/secrets.js";

export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  const metrics = createMetrics(deps.queues);

  installRequestContext(app, deps, metrics);
  const limitBody = bodyLimit({
    maxSize: deps.config.BODY_LIMIT_BYTES,
    onError: () => {
      throw new AppError(
        "PAYLOAD_TOO_LARGE",
        `request body is larger than ${deps.config.BODY_LIMIT_BYTES} bytes`,
      );
    },
  });
  // File uploads stream to the file store under their own limit (FILE_MAX_BYTES); a secret's
  // store has its own too (SECRETS_MAX_VALUE_BYTES plus room for the id and key).
  app.use((c, next) =>
    isFileUpload(c.req.method, c.req.path) || isSecretStore(c.req.method, c.req.path)
      ? next()
      : limitBody(c, next),
  );

  app.route("/", healthRoutes(metrics));
  app.route("/", jobsRoutes);
  app.route("/", alertsRoutes);
  app.route("/", filesRoutes);
  app.route("/", secretsRoutes);

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Conveyor",
      version: "0.1.0",
      description:
        "A job-processing platform: submissions answer 202 with a job; GET /v1/jobs/{queue}/{id} tracks it.",
    },
  });
  app.get("/docs", swaggerUI({ url: "/openapi.json" }));

  if (deps.dashboards !== false) mountDashboards(app, deps);
  return app;
}

export type App = ReturnType<typeof createApp>;
