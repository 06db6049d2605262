import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CryptoError } from "../../lib/sealing.js";
import { createKeyCache, decryptRecord, deriveMasterKey, encryptRecord, RECORD_V1 } from "./record.js";

const salt = Buffer.from("test-deployment-salt");

describe("records", () => {
  it("round-trip under the same key and id; layout is version, salt, nonce, ciphertext, tag", async () => {
    const master = await deriveMasterKey("client key", salt);
    const plaintext = Buffer.from(JSON.stringify({ a: [1, "ü", null] }));
    const record = encryptRecord(master, "rec-1", plaintext);
    expect(record[0]).toBe(RECORD_V1);
    expect(record).toHaveLength(1 + 16 + 12 + plaintext.length + 16);
    expect(decryptRecord(master, "rec-1", record).equals(plaintext)).toBe(true);
  });

  it("give every record its own salt and nonce, so equal values never look equal", async () => {
    const master = await deriveMasterKey("client key", salt);
    const a = encryptRecord(master, "x", Buffer.from("same"));
    const b = encryptRecord(master, "x", Buffer.from("same"));
    expect(a.subarray(1, 29).equals(b.subarray(1, 29))).toBe(false);
    expect(a.equals(b)).toBe(false);
  });

  it("do not open with another key, under another id (a copied ciphertext), or when altered", async () => {
    const master = await deriveMasterKey("client key", salt);
    const record = encryptRecord(master, "rec-1", Buffer.from('"v"'));
    const other = await deriveMasterKey("another key", salt);
    expect(() => decryptRecord(other, "rec-1", record)).toThrow(CryptoError);
    expect(() => decryptRecord(master, "rec-2", record)).toThrow(CryptoError);
    const unknownVersion = Buffer.from(record);
    unknownVersion[0] = 0x02;
    expect(() => decryptRecord(master, "rec-1", unknownVersion)).toThrow(/unknown record version 2/);
    const flipped = Buffer.from(record);
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    expect(() => decryptRecord(master, "rec-1", flipped)).toThrow(CryptoError);
    expect(() => decryptRecord(master, "rec-1", record.subarray(0, 30))).toThrow(/truncated/);
  });

  it("derive master keys that depend on the client key and the deployment salt", async () => {
    const a = await deriveMasterKey("k", salt);
    expect((await deriveMasterKey("k", salt)).equals(a)).toBe(true);
    expect((await deriveMasterKey("k2", salt)).equals(a)).toBe(false);
    expect((await deriveMasterKey("k", Buffer.from("other-salt"))).equals(a)).toBe(false);
  });
});

describe("createKeyCache", () => {
  const lookupKey = randomBytes(32);
  const counting = () => {
    const calls: string[] = [];
    return {
      calls,
      derive: async (k: string) => {
        calls.push(k);
        return Buffer.from(k);
      },
    };
  };

  it("says whether a key would be answered without deriving, a derivation in progress included", async () => {
    const cache = createKeyCache({ lookupKey, max: 10, ttlMs: 60_000 });
    const { derive } = counting();
    expect(cache.has("k")).toBe(false);
    const pending = cache.get("k", derive);
    expect(cache.has("k")).toBe(true);
    await pending;
    expect(cache.has("k")).toBe(true);
    expect(cache.has("other")).toBe(false);
    const off = createKeyCache({ lookupKey, max: 0, ttlMs: 60_000 });
    await off.get("k", derive);
    expect(off.has("k")).toBe(false);
  });

  it("derives once for concurrent and repeated lookups of one key", async () => {
    const cache = createKeyCache({ lookupKey, max: 10, ttlMs: 60_000 });
    const { calls, derive } = counting();
    const keys = await Promise.all(Array.from({ length: 20 }, () => cache.get("k", derive)));
    await cache.get("k", derive);
    expect(calls).toEqual(["k"]);
    expect(keys.every((k) => k.toString() === "k")).toBe(true);
    cache.clear();
  });

  it("holds at most `max` entries, dropping the oldest", async () => {
    const cache = createKeyCache({ lookupKey, max: 2, ttlMs: 60_000 });
    const { calls, derive } = counting();
    for (const k of ["a", "b", "c", "a"]) await cache.get(k, derive);
    expect(cache.size).toBe(2);
    expect(calls).toEqual(["a", "b", "c", "a"]);
    cache.clear();
  });

  it("forgets an entry after its TTL, and a failed derivation at once", async () => {
    const cache = createKeyCache({ lookupKey, max: 10, ttlMs: 50 });
    const { calls, derive } = counting();
    await cache.get("a", derive);
    await new Promise((r) => setTimeout(r, 80));
    expect(cache.size).toBe(0);
    await cache.get("a", derive);
    expect(calls).toEqual(["a", "a"]);
    await expect(cache.get("bad", () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(cache.size).toBe(1);
    cache.clear();
  });

  it("caches nothing when disabled", async () => {
    const cache = createKeyCache({ lookupKey, max: 0, ttlMs: 60_000 });
    const { calls, derive } = counting();
    await cache.get("a", derive);
    await cache.get("a", derive);
    expect(calls).toEqual(["a", "a"]);
    expect(cache.size).toBe(0);
  });
});
