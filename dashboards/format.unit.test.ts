import { describe, expect, it } from "vitest";
import { parsePageQuery, toLocalInput, toSearchParams } from "./filters.js";
import { formatDuration, formatInstant } from "./format.js";

describe("formatDuration", () => {
  it.each([
    [null, "—"],
    [Number.NaN, "—"],
    [0, "0 ms"],
    [850, "850 ms"],
    [999.6, "1.0 s"],
    [4_240, "4.2 s"],
    [42_000, "42 s"],
    [59_600, "1m 00s"],
    [180_000, "3m 00s"],
    [288_000, "4m 48s"],
    [3_599_600, "1h 00m"],
    [7_620_000, "2h 07m"],
    [86_399_000, "1d 0h"],
    [273_600_000, "3d 4h"],
    [-90_000, "-1m 30s"],
  ])("%s ms reads %s", (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });
});

describe("formatInstant", () => {
  it("prints UTC to the second", () => {
    expect(formatInstant("2026-11-21T12:00:05.123+01:00")).toBe("2026-11-21 11:00:05");
    expect(formatInstant(null)).toBe("—");
  });
});

describe("the page's filters", () => {
  it("reads an HTML form: empty fields are no filter, datetime-local is UTC", () => {
    const parsed = parsePageQuery({
      name: "",
      service: "  Checkout ",
      responder: "",
      status: "ACKNOWLEDGED",
      from: "2026-11-21T11:00",
      to: "2026-11-21T12:30:15+01:00",
    });
    expect(parsed).toEqual({
      ok: true,
      query: {
        filters: {
          service: "Checkout",
          status: "ACKNOWLEDGED",
          from: new Date("2026-11-21T11:00:00Z"),
          to: new Date("2026-11-21T11:30:15Z"),
        },
        limit: 25,
      },
    });
    if (!parsed.ok) return;
    expect(toSearchParams(parsed.query).toString()).toBe(
      "service=Checkout&status=ACKNOWLEDGED&from=2026-11-21T11%3A00%3A00.000Z&to=2026-11-21T11%3A30%3A15.000Z",
    );
    expect(toLocalInput(parsed.query.filters.from)).toBe("2026-11-21T11:00");
    expect(toLocalInput(parsed.query.filters.to)).toBe("2026-11-21T11:30:15");
  });

  it("names each field that does not parse", () => {
    const parsed = parsePageQuery({ status: "OPEN", from: "yesterday", limit: "7" });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors.map((e) => e.field).sort()).toEqual(["from", "limit", "status"]);
  });
});
