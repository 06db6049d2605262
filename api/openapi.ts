// Schemas shared by every route's OpenAPI description, and the hook that turns a failed
// zod validation into the platform's error body.

import type { Hook } from "@hono/zod-openapi";
import { z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context.js";
import { AppError, ERROR_CODES } from "../lib/errors.js";

export const errorBodySchema = z
  .object({
    error: z.object({
      code: z.enum(Object.keys(ERROR_CODES) as [keyof typeof ERROR_CODES, ...(keyof typeof ERROR_CODES)[]]),
      message: z.string(),
      requestId: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");

const errorDescriptions: Record<number, string> = {
  400: "Invalid input (not JSON, or failed validation)",
  401: "Missing or wrong credentials",
  404: "Not found",
  413: "Body larger than the configured limit",
  415: "Body is not JSON",
  429: "Too many requests",
  503: "Redis or Postgres unavailable; see Retry-After",
};

/** One error answer in the OpenAPI document: its description, and the platform's error body. */
export const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: errorBodySchema } },
});

/** A JSON answer in the OpenAPI document: its description and schema. */
export const jsonResponse = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

export function errorResponses<S extends number>(...statuses: S[]) {
  return Object.fromEntries(
    [...statuses, 503].map((s) => [s, errorResponse(errorDescriptions[s] ?? "Error")]),
  ) as Record<S | 503, ReturnType<typeof errorResponse>>;
}

export const jobViewSchema = z
  .object({
    id: z.string(),
    queue: z.string(),
    name: z.string(),
    state: z.string().openapi({ example: "completed" }),
    progress: z.unknown(),
    attempts: z.number().int(),
    result: z.unknown(),
    failedReason: z.string().nullable(),
    createdAt: z.string().nullable(),
    processedAt: z.string().nullable(),
    finishedAt: z.string().nullable(),
  })
  .openapi("Job");

export const jobAcceptedSchema = z
  .object({ job: z.object({ queue: z.string(), id: z.string(), statusUrl: z.string() }) })
  .openapi("JobAccepted");

/** A submission's answers: 202 with the job, or 200 with the finished job under Prefer: wait. */
export const jobSubmissionResponses = {
  202: {
    description: "Accepted; see Location for the job",
    content: { "application/json": { schema: jobAcceptedSchema } },
  },
  200: {
    description: "Finished in time (Prefer: wait)",
    content: { "application/json": { schema: jobViewSchema } },
  },
  409: errorResponse(
    "Idempotency-Key replayed while the first request's job is not enqueued yet; see Retry-After",
  ),
  422: errorResponse("Idempotency-Key already used with a different request (IDEMPOTENCY_KEY_REUSED)"),
};

export const jobSubmissionHeaders = z.object({
  "idempotency-key": z
    .string()
    .optional()
    .openapi({
      description:
        "The same request with the same key within 24 h returns the first job, enqueuing nothing; " +
        "a different request with a used key answers 422",
    }),
  prefer: z
    .string()
    .optional()
    .openapi({ description: "wait=N (N ≤ 30): answer with the finished job if it finishes in time" }),
});

/** zod failures become 400 VALIDATION_FAILED with each issue's path and message. */
export const validationHook: Hook<unknown, AppEnv, string, unknown> = (result) => {
  if (!result.success) {
    const issues = result.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
    throw new AppError(
      "VALIDATION_FAILED",
      `invalid ${result.target}: ${issues.map((i) => `${i.path || "(root)"} ${i.message}`).join("; ")}`,
      issues,
    );
  }
};
