// Answering with JSON text the server already serialised (e.g. plaintexts spliced into an array
// as they were stored), typed as the route declares its body so the OpenAPI contract still checks.
import type { Context, TypedResponse } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { JSONParsed } from "hono/utils/types";

export function jsonText<T, S extends ContentfulStatusCode>(
  c: Context,
  text: string,
  status: S,
): Response & TypedResponse<JSONParsed<T>, S, "json"> {
  c.header("Content-Type", "application/json; charset=UTF-8");
  // The one place a body's type is asserted rather than inferred: `text` is JSON of a T by contract.
  const answer: Response = c.body(text, status);
  return answer as Response & TypedResponse<JSONParsed<T>, S, "json">;
}
