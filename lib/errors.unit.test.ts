import { ReplyError } from "ioredis";
import { describe, expect, it } from "vitest";
import { isDependencyDown } from "./errors.js";

describe("isDependencyDown", () => {
  it("counts connection failures and Redis's temporary refusals, not the server's verdicts", () => {
    const coded = (code: string) => Object.assign(new Error("x"), { code });
    expect(isDependencyDown(coded("ECONNREFUSED"))).toBe(true);
    expect(isDependencyDown(coded("08006"))).toBe(true);
    expect(isDependencyDown(new ReplyError("LOADING Redis is loading the dataset in memory"))).toBe(true);
    expect(isDependencyDown(new Error("file store: BUSY Redis is busy running a script"))).toBe(true);
    expect(isDependencyDown(new Error("wrapped", { cause: coded("ECONNRESET") }))).toBe(true);
    expect(
      isDependencyDown(new ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")),
    ).toBe(false);
    expect(isDependencyDown(new Error("file store: NOAUTH Authentication required."))).toBe(false);
    expect(isDependencyDown(coded("23505"))).toBe(false);
    expect(isDependencyDown("ECONNREFUSED")).toBe(false);
  });
});
