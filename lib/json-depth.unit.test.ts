import { describe, expect, it } from "vitest";
import { exceedsJsonDepth } from "./json-depth.js";

const nested = (depth: number): unknown => JSON.parse(`${"[".repeat(depth)}${"]".repeat(depth)}`);

describe("exceedsJsonDepth", () => {
  it("counts one level per array or object; scalars are none", () => {
    for (const scalar of [null, 0, "", false, "deep"]) expect(exceedsJsonDepth(scalar, 0)).toBe(false);
    expect(exceedsJsonDepth([], 0)).toBe(true);
    expect(exceedsJsonDepth({}, 1)).toBe(false);
    expect(exceedsJsonDepth({ a: [1, { b: null }] }, 3)).toBe(false);
    expect(exceedsJsonDepth({ a: [1, { b: [] }] }, 3)).toBe(true);
    expect(exceedsJsonDepth(nested(64), 64)).toBe(false);
    expect(exceedsJsonDepth(nested(65), 64)).toBe(true);
  });

  it("measures values nested deeper than the call stack allows (JSON.parse accepts them)", () => {
    expect(exceedsJsonDepth(nested(200_000), 64)).toBe(true);
    expect(exceedsJsonDepth(nested(200_000), 200_000)).toBe(false);
  });
});
