// Field rules for values that end up in Postgres: text without NUL (Postgres text cannot hold
// it) and instants Postgres can store. Checked at the edge, so bad input is a 400, never a
// 500 from a query or a job that no retry can fix.
import { z } from "zod";

export const hasNoNul = (s: string): boolean => !s.includes("\u0000");

/** Years 1–9999: ISO-8601 has no year 0, and Postgres rejects it. */
export const isStorableInstant = (d: Date): boolean => {
  const year = d.getUTCFullYear();
  return !Number.isNaN(d.getTime()) && year >= 1 && year <= 9999;
};

export const pgText = () => z.string().refine(hasNoNul, "must not contain NUL characters");

export const pgInstant = () =>
  z.iso
    .datetime({ offset: true, message: "must be an ISO-8601 timestamp" })
    .refine((s) => isStorableInstant(new Date(s)), "must be between years 1 and 9999");
