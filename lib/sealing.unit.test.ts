import { describe, expect, it } from "vitest";
import { CryptoError, decodeKey, generateKey, open, SEAL_V1, seal } from "./sealing.js";

describe("decodeKey", () => {
  it("accepts base64 of 32 bytes and nothing else", () => {
    const key = generateKey();
    expect(decodeKey(key)).toHaveLength(32);
    for (const bad of ["", "abc", Buffer.alloc(16).toString("base64"), `${key.slice(0, -1)}*`, `${key}AAAA`])
      expect(() => decodeKey(bad), bad).toThrow(CryptoError);
  });
});

describe("seal / open", () => {
  const key = decodeKey(generateKey());

  it("round-trips, with a fresh nonce every time", () => {
    const a = seal(key, "the payload", "ctx");
    const b = seal(key, "the payload", "ctx");
    expect(a).not.toBe(b);
    expect(Buffer.from(a, "base64")[0]).toBe(SEAL_V1);
    expect(open(key, a, "ctx").toString()).toBe("the payload");
    expect(open(key, b, "ctx").toString()).toBe("the payload");
  });

  it("does not open under another key, another context, or after any change", () => {
    const sealed = seal(key, "the payload", "ctx");
    expect(() => open(decodeKey(generateKey()), sealed, "ctx")).toThrow(CryptoError);
    expect(() => open(key, sealed, "ctx2")).toThrow(CryptoError);
    const raw = Buffer.from(sealed, "base64");
    for (let i = 0; i < raw.length; i++) {
      const tampered = Buffer.from(raw);
      tampered[i] = (tampered[i] ?? 0) ^ 1;
      expect(() => open(key, tampered.toString("base64"), "ctx")).toThrow(CryptoError);
    }
    expect(() => open(key, raw.subarray(0, 20).toString("base64"), "ctx")).toThrow(CryptoError);
  });

  it("keeps the plaintext out of the sealed text", () => {
    const sealed = seal(key, "plain-marker-1234567890", "ctx");
    expect(sealed).not.toContain("plain-marker");
    expect(Buffer.from(sealed, "base64").toString("latin1")).not.toContain("plain-marker");
  });
});
