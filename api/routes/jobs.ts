// GET /v1/jobs/{queue}/{id}: the state of a job, by the URL its submission answered with, for the
// tenant that submitted it (and operators).
import { OpenAPIHono, z } from "@hono/zod-openapi";
import { ANONYMOUS_TENANT, isOperator, tenantOf } from "../../domains/identity/caller.js";
import { type Access, ANY_ROLE, guardedRoute } from "../../http/access.js";
import type { AppEnv } from "../../http/context.js";
import { AppError } from "../../lib/errors.js";
import { jobOwners } from "../../queues/contract.js";
import { QUEUE_NAMES } from "../../queues/names.js";
import { isQueueName } from "../../queues/registry.js";
import { jobView } from "../job-submission.js";
import { errorResponses, jobViewSchema } from "../openapi.js";

/**
 * Any account, on the jobs it submitted (ops and admins on every job); callers without
 * credentials on the anonymous tenant's jobs, wherever anonymous submissions are open.
 */
const JOBS_ACCESS: Access = { roles: ANY_ROLE, anonymous: "anonymous-tenant" };

const getJob = guardedRoute(JOBS_ACCESS, {
  method: "get",
  path: "/v1/jobs/{queue}/{id}",
  tags: ["jobs"],
  summary: "State, progress, result and timestamps of a job",
  request: {
    params: z.object({
      queue: z
        .string()
        .openapi({ example: "alert-ingestion", description: `one of ${QUEUE_NAMES.join(", ")}` }),
      id: z.string().min(1).max(256),
    }),
  },
  responses: {
    200: { description: "The job", content: { "application/json": { schema: jobViewSchema } } },
    ...errorResponses(404),
  },
});

export const jobsRoutes = new OpenAPIHono<AppEnv>().openapi(getJob, async (c) => {
  const { queue, id } = c.req.valid("param");
  if (!isQueueName(queue)) throw new AppError("NOT_FOUND", `no queue named ${queue}`);
  const jobs = c.get("deps").queues.get(queue);
  // The state first, then the job: read the other way round, a job finishing in between
  // would show as completed with no result and no finishedAt.
  const state = await jobs.getJobState(id);
  const job = await jobs.getJob(id);
  // Another tenant's job is as unknown as a job that does not exist.
  const caller = c.get("caller");
  if (!job || !(isOperator(caller) || (jobOwners(job) ?? [ANONYMOUS_TENANT]).includes(tenantOf(caller))))
    throw new AppError("NOT_FOUND", `no job ${id} in queue ${queue} (unknown, or trimmed after it finished)`);
  return c.json(await jobView(queue, job, state), 200);
});
