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
    // ioredis's commandTimeout: the server took the command and does not answer (frozen).
    expect(isDependencyDown(new Error("Command timed out"))).toBe(true);
    // Redis at maxmemory (noeviction), for a plain command and inside a script (BullMQ's add).
    expect(isDependencyDown(new ReplyError("OOM command not allowed when used memory > 'maxmemory'."))).toBe(
      true,
    );
    expect(
      isDependencyDown(
        new ReplyError(
          "OOM command not allowed when used memory > 'maxmemory'. script: 80862643, on @user_script:507.",
        ),
      ),
    ).toBe(true);
    expect(
      isDependencyDown(new ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")),
    ).toBe(false);
    expect(isDependencyDown(new Error("file store: NOAUTH Authentication required."))).toBe(false);
    expect(isDependencyDown(coded("23505"))).toBe(false);
    expect(isDependencyDown("ECONNREFUSED")).toBe(false);
  });
});
