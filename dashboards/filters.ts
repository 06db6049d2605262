// The operator page's filter form: the same filters as GET /v1/alerts, read from what an HTML
// form sends (empty fields, and datetime-local values that carry no offset).
import { z } from "zod";
import { ALERT_STATUSES } from "../db/schema/alerts.js";
import type { AlertFilters } from "../domains/alerts/queries.js";
import { hasNoNul, isStorableInstant } from "../lib/postgres-values.js";

const PAGE_SIZE_VALUES = ["25", "50", "100"] as const;
export const PAGE_SIZES: readonly number[] = PAGE_SIZE_VALUES.map(Number);
export const DEFAULT_PAGE_SIZE = 25;

/** An empty form field means "no filter". */
const optionalText = z
  .string()
  .trim()
  .max(512)
  .refine(hasNoNul, "must not contain NUL characters")
  .optional()
  .transform((v) => (v ? v : undefined));

// datetime-local sends 2026-11-21T11:00 with no offset; the form labels it UTC.
const LOCAL_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/;
const isoWithOffset = z.iso.datetime({ offset: true });

const optionalInstant = optionalText.transform((v, ctx) => {
  if (v === undefined) return undefined;
  const parsed = LOCAL_DATETIME.test(v)
    ? new Date(`${v}Z`)
    : isoWithOffset.safeParse(v).success
      ? new Date(v)
      : undefined;
  if (parsed === undefined || !isStorableInstant(parsed)) {
    ctx.addIssue({ code: "custom", message: "must be a date and time, e.g. 2026-11-21T11:00 (UTC)" });
    return z.NEVER;
  }
  return parsed;
});

export const pageQuerySchema = z.object({
  name: optionalText,
  service: optionalText,
  responder: optionalText,
  status: optionalText.pipe(
    z.enum(ALERT_STATUSES, { message: `must be one of ${ALERT_STATUSES.join(", ")}` }).optional(),
  ),
  from: optionalInstant,
  to: optionalInstant,
  limit: optionalText
    .pipe(z.enum(PAGE_SIZE_VALUES, { message: `must be one of ${PAGE_SIZE_VALUES.join(", ")}` }).optional())
    .transform((v) => (v === undefined ? DEFAULT_PAGE_SIZE : Number(v))),
});

export interface PageQuery {
  filters: AlertFilters;
  limit: number;
}

export type ParsedPageQuery =
  | { ok: true; query: PageQuery }
  | { ok: false; errors: { field: string; message: string }[] };

export function parsePageQuery(raw: Record<string, string>): ParsedPageQuery {
  const result = pageQuerySchema.safeParse(raw);
  if (!result.success)
    return {
      ok: false,
      errors: result.error.issues.map((i) => ({ field: i.path.join(".") || "query", message: i.message })),
    };
  const { limit, ...filters } = result.data;
  return { ok: true, query: { filters, limit } };
}

/** The query string that reproduces `query`, for links and the live refresh. */
export function toSearchParams(query: PageQuery): URLSearchParams {
  const params = new URLSearchParams();
  const { filters } = query;
  for (const key of ["name", "service", "responder", "status"] as const) {
    const value = filters[key];
    if (value !== undefined) params.set(key, value);
  }
  if (filters.from) params.set("from", filters.from.toISOString());
  if (filters.to) params.set("to", filters.to.toISOString());
  if (query.limit !== DEFAULT_PAGE_SIZE) params.set("limit", String(query.limit));
  return params;
}

/** A Date as a datetime-local input shows it: UTC, to the minute unless it has seconds. */
export function toLocalInput(d: Date | undefined): string {
  if (!d) return "";
  const iso = d.toISOString();
  return iso.slice(16, 23) === ":00.000" ? iso.slice(0, 16) : iso.slice(0, 19);
}
