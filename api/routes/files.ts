// Files: HTTP around the files domain (domains/files/): uploads and downloads stream through in
// chunks, and the `chunk-hashing` worker verifies every stored chunk after each upload. Also the
// compatibility routes of the older file API (/upload, /download).

import type { HttpBindings } from "@hono/node-server";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type FileManifest, fileNameProblem } from "../../domains/files/store.js";
import { tenantOf } from "../../domains/identity/caller.js";
import { type Access, ANY_ROLE, guardedRoute } from "../../http/access.js";
import { clientAddress } from "../../http/client-address.js";
import type { AppEnv } from "../../http/context.js";
import { AppError, serviceUnavailable } from "../../lib/errors.js";
import { chunkHashingQueue } from "../../queues/chunk-hashing.js";
import { statusUrl, submitJob } from "../job-submission.js";
import {
  errorResponse,
  errorResponses,
  jobAcceptedSchema,
  jobSubmissionHeaders,
  jobSubmissionResponses,
  validationHook,
} from "../openapi.js";

/** File uploads stream past the global JSON body limit; FILE_MAX_BYTES applies to them instead. */
export const isFileUpload = (method: string, path: string): boolean =>
  (method === "PUT" && path.startsWith("/v1/files/")) || (method === "POST" && path.startsWith("/upload/"));

const fileName = z
  .string()
  .superRefine((name, ctx) => {
    const problem = fileNameProblem(name);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .openapi({
    description: "1-255 bytes (URL-decoded), no / and no control characters",
    example: "scan-0042.nii",
  });

const binary = z.string().openapi({ type: "string", format: "binary" });

const fileInfoSchema = z
  .object({
    name: z.string(),
    size: z.number().int(),
    sha1: z.string().openapi({ description: "SHA-1 of the whole file, hex" }),
    chunkSize: z.number().int(),
    chunks: z.number().int(),
    expiresAt: z
      .string()
      .openapi({ description: "When the file and its chunks are dropped (FILE_TTL_SECONDS)" }),
  })
  .openapi("FileInfo");

const storedSchema = fileInfoSchema
  .extend({
    verification: jobAcceptedSchema.shape.job.openapi({
      description: "The `chunk-hashing` job that reads every chunk back and checks it",
    }),
  })
  .openapi("FileStored");

const listedSchema = z
  .object({
    name: z.string(),
    size: z.number().int(),
    sha1: z.string(),
    chunks: z.number().int(),
    verified: z.boolean(),
    state: z.enum(["pending", "verified", "corrupted"]),
    expiresAt: z.string(),
  })
  .openapi("FileListed");

const uploadHeaders = z.object({
  "x-checksum-sha1": z
    .string()
    .regex(/^[0-9a-fA-F]{40}$/, "40 hex digits")
    .optional()
    .openapi({ description: "SHA-1 of the whole body, hex; a mismatch answers 422 and stores nothing" }),
});

const uploadBody = {
  required: true,
  content: { "application/octet-stream": { schema: binary } },
  description: "The file's bytes, raw (streamed; never buffered whole)",
};

const fileErrors = {
  ...errorResponses(400, 404, 413),
  416: errorResponse("Range outside the file"),
  422: errorResponse("Empty body, or the bytes do not match X-Checksum-SHA1 (EMPTY_BODY, CHECKSUM_MISMATCH)"),
  429: errorResponse(
    "RATE_LIMITED: this client runs FILE_MAX_TRANSFERS_PER_CLIENT transfers already; see Retry-After",
  ),
  500: errorResponse("FILE_CORRUPTED: the file failed verification (known before the first byte)"),
  503: errorResponse(
    "The file store or Redis is unavailable, or the server's memory budget for transfers is in use " +
      "(FILE_MEMORY_BUDGET_BYTES); see Retry-After",
  ),
};

const uploadErrors = {
  ...fileErrors,
  408: errorResponse("REQUEST_TIMEOUT: the body sent no byte for FILE_IDLE_TIMEOUT_MS; nothing stored"),
  507: errorResponse("STORAGE_FULL: the file store holds FILE_STORE_MAX_BYTES; nothing stored"),
};

const downloadResponses = {
  200: {
    description:
      "The bytes, streamed and verified chunk by chunk. Damage found mid-stream cuts the connection " +
      "(a short read against Content-Length), never sends wrong bytes. HEAD: the same headers, no body.",
    headers: z.object({
      etag: z.string().openapi({ description: "The SHA-1, quoted" }),
      "x-checksum-sha1": z.string(),
      "content-length": z.string(),
    }),
    content: { "application/octet-stream": { schema: binary } },
  },
  206: {
    description: "The requested range (Content-Range), only the chunks it needs read and verified",
    content: { "application/octet-stream": { schema: binary } },
  },
  ...fileErrors,
};

const rangeHeaders = z.object({
  range: z.string().optional().openapi({ description: "bytes=a-b, bytes=a- or bytes=-n (one range)" }),
  "if-range": z.string().optional().openapi({ description: "The ETag; the range is ignored if it changed" }),
});

/** Any account, on its own files; anonymous callers too when ANONYMOUS_ACCESS lists files. */
const FILES_ACCESS: Access = { roles: ANY_ROLE, anonymous: "files" };

const putRoute = guardedRoute(FILES_ACCESS, {
  method: "put",
  path: "/v1/files/{name}",
  tags: ["files"],
  summary: "Store a file (raw body, streamed), replacing any file of that name in one step",
  description:
    "Cut into FILE_CHUNK_SIZE chunks with a SHA-1 each; enqueues `files.verify` on `chunk-hashing`. " +
    "Limit FILE_MAX_BYTES (413); the global JSON body limit does not apply.",
  request: { params: z.object({ name: fileName }), headers: uploadHeaders, body: uploadBody },
  responses: {
    201: { description: "Stored", content: { "application/json": { schema: storedSchema } } },
    ...uploadErrors,
  },
});

const getRoute = guardedRoute(FILES_ACCESS, {
  method: "get",
  path: "/v1/files/{name}",
  tags: ["files"],
  summary: "Download a file (GET or HEAD), optionally one byte range",
  request: { params: z.object({ name: fileName }), headers: rangeHeaders },
  responses: downloadResponses,
});

const deleteRoute = guardedRoute(FILES_ACCESS, {
  method: "delete",
  path: "/v1/files/{name}",
  tags: ["files"],
  summary: "Delete a file (downloads already under way finish with their bytes)",
  request: { params: z.object({ name: fileName }) },
  responses: { 204: { description: "Deleted" }, ...errorResponses(400, 404) },
});

const listRoute = guardedRoute(FILES_ACCESS, {
  method: "get",
  path: "/v1/files",
  tags: ["files"],
  summary: "Every stored file, by name",
  responses: {
    200: {
      description: "The files",
      content: { "application/json": { schema: z.object({ items: z.array(listedSchema) }) } },
    },
    ...errorResponses(),
  },
});

const verifyRoute = guardedRoute(FILES_ACCESS, {
  method: "post",
  path: "/v1/files/{name}/verify",
  tags: ["files"],
  summary: "Verify a stored file again: a `chunk-hashing` job reads back and checks every chunk",
  request: { params: z.object({ name: fileName }), headers: jobSubmissionHeaders },
  responses: {
    ...jobSubmissionResponses,
    ...errorResponses(400, 404),
  },
});

const legacyUploadRoute = guardedRoute(FILES_ACCESS, {
  method: "post",
  path: "/upload/{fileName}",
  tags: ["files (compatibility)"],
  summary: "Older file API: store a file (raw body); same behaviour as PUT /v1/files/{name}",
  request: { params: z.object({ fileName }), body: uploadBody },
  responses: {
    200: {
      description: "Stored",
      content: { "application/json": { schema: z.object({ ok: z.literal(true) }) } },
    },
    ...uploadErrors,
  },
});

const legacyDownloadRoute = guardedRoute(FILES_ACCESS, {
  method: "get",
  path: "/download/{fileName}",
  tags: ["files (compatibility)"],
  summary: "Older file API: download a file; same behaviour as GET /v1/files/{name}",
  request: { params: z.object({ fileName }), headers: rangeHeaders },
  responses: downloadResponses,
});

/** Streams the request body into the store and enqueues its verification. */
async function upload(c: Context<AppEnv>, name: string) {
  const { files } = c.get("services");
  const tenant = tenantOf(c.get("caller"));
  files.available(tenant);
  const { redis } = c.get("deps");
  // Refuse before reading a byte when the verification could not be enqueued afterwards.
  if (redis.status !== "ready") throw serviceUnavailable("Redis");
  // Checked here as well as in the route schema: the compatibility route declares no headers.
  const checksum = c.req.header("X-Checksum-SHA1");
  if (checksum !== undefined && !/^[0-9a-fA-F]{40}$/.test(checksum))
    throw new AppError("VALIDATION_FAILED", "X-Checksum-SHA1 must be 40 hex digits");
  const declared = c.req.header("Content-Length");
  // Under @hono/node-server the Node request itself is read: its async iterator pauses the
  // socket while the store is behind, whereas Node 20's Readable.toWeb (behind c.req.raw.body)
  // counts 64 KiB pieces, not bytes, against its high-water mark of 16,384 and so would buffer
  // up to a gigabyte. c.req.raw.body must not be touched then: creating the web
  // body starts it reading the same socket.
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
  const web = incoming ? undefined : c.req.raw.body;
  const { manifest, verificationJobId: id } = await files
    .upload(tenant, name, incoming ?? web ?? null, {
      expectedSha1: checksum?.toLowerCase(),
      declaredLength: declared === undefined || declared === "" ? undefined : Number(declared),
      cancel: () => {
        web?.cancel().catch(() => {});
      },
      client: clientAddress(c),
      log: c.get("log"),
    })
    .catch((err: unknown) => {
      // The rest of an idle body would never come: the connection closes after the answer,
      // rather than wait for it.
      if (err instanceof AppError && err.code === "REQUEST_TIMEOUT") c.header("Connection", "close");
      throw err;
    });
  return {
    manifest,
    verification: { queue: chunkHashingQueue.name, id, statusUrl: statusUrl("chunk-hashing", id) },
  };
}

async function download(c: Context<AppEnv>, name: string): Promise<Response> {
  const file = await c.get("services").files.openDownload(tenantOf(c.get("caller")), name, {
    head: c.req.method === "HEAD",
    range: c.req.header("Range"),
    ifRange: c.req.header("If-Range"),
    client: clientAddress(c),
    log: c.get("log"),
  });
  const node = c.env as Partial<HttpBindings> | undefined;
  if (!file.sendTo || !file.stream) return c.body(null, file.status, file.headers);
  if (!node?.outgoing || !node.incoming) return c.body(file.stream(), file.status, file.headers);
  const { outgoing } = node;
  const connection = node.incoming.socket;
  // Under @hono/node-server the bytes go to Node's response directly: the chunk buffers are
  // written as they are and reused once the socket has taken them, where a web stream would
  // need a copy of every byte. The answer (its status and headers, X-Request-Id included) is
  // still returned for the access log, marked as sent.
  // A client gone (the connection's close: the response's own close never comes for one still
  // queued behind another) stops the read-ahead and frees the lease; harmless after the end.
  const done = () => {
    connection.off("close", done);
    outgoing.off("close", done);
    file.abort();
  };
  connection.once("close", done);
  outgoing.once("close", done);
  if (connection.closed) done();
  const answer = c.body(null, file.status, file.headers);
  outgoing.writeHead(answer.status, Object.fromEntries(answer.headers));
  void file.sendTo(outgoing, connection);
  for (const [key, value] of RESPONSE_ALREADY_SENT.headers) answer.headers.set(key, value);
  return answer;
}

const info = (m: FileManifest) => ({
  name: m.name,
  size: m.size,
  sha1: m.sha1,
  chunkSize: m.chunkSize,
  chunks: m.chunks,
  expiresAt: m.expiresAt,
});

export const filesRoutes = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

filesRoutes
  .openapi(putRoute, async (c) => {
    const { name } = c.req.valid("param");
    const { manifest, verification } = await upload(c, name);
    c.header("Location", `/v1/files/${encodeURIComponent(name)}`);
    return c.json({ ...info(manifest), verification }, 201);
  })
  // Hono answers HEAD with the GET handler (body dropped); download() sees the method and
  // reads no chunk.
  .openapi(getRoute, (c) => download(c, c.req.valid("param").name))
  .openapi(deleteRoute, async (c) => {
    const { name } = c.req.valid("param");
    if (!(await c.get("services").files.remove(tenantOf(c.get("caller")), name)))
      throw new AppError("NOT_FOUND", `no file named ${name}`);
    return c.body(null, 204);
  })
  .openapi(listRoute, async (c) => {
    const files = await c.get("services").files.list(tenantOf(c.get("caller")));
    return c.json(
      {
        items: files.map((m) => ({
          name: m.name,
          size: m.size,
          sha1: m.sha1,
          chunks: m.chunks,
          verified: m.state === "verified",
          state: m.state,
          expiresAt: m.expiresAt,
        })),
      },
      200,
    );
  })
  .openapi(verifyRoute, async (c) => {
    const { name } = c.req.valid("param");
    const tenant = tenantOf(c.get("caller"));
    const manifest = await c.get("services").files.head(tenant, name);
    if (!manifest) throw new AppError("NOT_FOUND", `no file named ${name}`);
    return submitJob(c, {
      contract: chunkHashingQueue,
      name: "files.verify",
      payload: { tenant, name, version: manifest.version },
    });
  })
  .openapi(legacyUploadRoute, async (c) => {
    await upload(c, c.req.valid("param").fileName);
    return c.json({ ok: true as const }, 200);
  })
  .openapi(legacyDownloadRoute, (c) => download(c, c.req.valid("param").fileName));

// Hono routes HEAD to the GET handlers; listed here so the OpenAPI document shows it.
for (const path of ["/v1/files/{name}", "/download/{fileName}"]) {
  filesRoutes.openAPIRegistry.registerPath({
    method: "head",
    path,
    tags: [path.startsWith("/v1") ? "files" : "files (compatibility)"],
    summary: "The download's headers (Content-Length, ETag, X-Checksum-SHA1), no body",
    request: {
      params: z.object(path.startsWith("/v1") ? { name: fileName } : { fileName }),
    },
    responses: {
      200: { description: "The headers a GET would send" },
      ...errorResponses(400, 404),
    },
  });
}
