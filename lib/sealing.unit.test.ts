import { describe, expect, it } from "vitest";
import {
  CryptoError,
  createSealKeyRing,
  decodeKey,
  GCM_NONCE_BYTES,
  gcmEncrypt,
  generateKey,
  open,
  SEAL_KEY_ID_BYTES,
  SEAL_V1,
  SEAL_V2,
  type SealKeyRing,
  seal,
  sealKeyId,
} from "./sealing.js";

describe("decodeKey", () => {
  it("accepts base64 of 32 bytes and nothing else", () => {
    const key = generateKey();
    expect(decodeKey(key)).toHaveLength(32);
    for (const bad of ["", "abc", Buffer.alloc(16).toString("base64"), `${key.slice(0, -1)}*`, `${key}AAAA`])
      expect(() => decodeKey(bad), bad).toThrow(CryptoError);
  });
});

const newKey = () => decodeKey(generateKey());

/** A version 0x01 payload, as deploys before the key ring wrote it: no key id. */
function sealV1(key: Buffer, plaintext: string, context: string): string {
  const version = Buffer.of(SEAL_V1);
  const { nonce, body } = gcmEncrypt(
    key,
    Buffer.from(plaintext),
    Buffer.concat([version, Buffer.from(context)]),
  );
  return Buffer.concat([version, nonce, body]).toString("base64");
}

describe("seal / open", () => {
  const ring = createSealKeyRing(newKey());

  it("round-trips, with a fresh nonce every time", () => {
    const a = seal(ring, "the payload", "ctx");
    const b = seal(ring, "the payload", "ctx");
    expect(a).not.toBe(b);
    expect(Buffer.from(a, "base64")[0]).toBe(SEAL_V2);
    expect(open(ring, a, "ctx").toString()).toBe("the payload");
    expect(open(ring, b, "ctx").toString()).toBe("the payload");
  });

  it("does not open under another key, another context, or after any change", () => {
    const sealed = seal(ring, "the payload", "ctx");
    expect(() => open(createSealKeyRing(newKey()), sealed, "ctx")).toThrow(CryptoError);
    expect(() => open(ring, sealed, "ctx2")).toThrow(CryptoError);
    const raw = Buffer.from(sealed, "base64");
    for (let i = 0; i < raw.length; i++) {
      const tampered = Buffer.from(raw);
      tampered[i] = (tampered[i] ?? 0) ^ 1;
      expect(() => open(ring, tampered.toString("base64"), "ctx")).toThrow(CryptoError);
    }
    expect(() => open(ring, raw.subarray(0, 28).toString("base64"), "ctx")).toThrow(CryptoError);
  });

  it("keeps the plaintext out of the sealed text", () => {
    const sealed = seal(ring, "plain-marker-1234567890", "ctx");
    expect(sealed).not.toContain("plain-marker");
    expect(Buffer.from(sealed, "base64").toString("latin1")).not.toContain("plain-marker");
  });
});

describe("the seal key ring", () => {
  const [oldKey, nextKey] = [newKey(), newKey()];
  const keyIdOf = (sealed: string) => Buffer.from(sealed, "base64").subarray(1, 1 + SEAL_KEY_ID_BYTES);

  it("names in every blob the key that sealed it", () => {
    const before: SealKeyRing = createSealKeyRing(oldKey, [nextKey]);
    const after: SealKeyRing = createSealKeyRing(nextKey, [oldKey]);
    expect(keyIdOf(seal(before, "x", "ctx"))).toEqual(sealKeyId(oldKey));
    expect(keyIdOf(seal(after, "x", "ctx"))).toEqual(sealKeyId(nextKey));
    expect(sealKeyId(oldKey)).not.toEqual(sealKeyId(nextKey));
    // The id follows the key, whatever the ring: it is no counter.
    expect(sealKeyId(Buffer.from(oldKey))).toEqual(sealKeyId(oldKey));
  });

  it("opens blobs sealed under either of its two keys", () => {
    const ring = createSealKeyRing(nextKey, [oldKey]);
    const underOld = seal(createSealKeyRing(oldKey), "sealed before the switch", "ctx");
    const underNext = seal(createSealKeyRing(nextKey), "sealed after the switch", "ctx");
    expect(open(ring, underOld, "ctx").toString()).toBe("sealed before the switch");
    expect(open(ring, underNext, "ctx").toString()).toBe("sealed after the switch");
  });

  it("no longer opens a blob once its key is retired, and says which key it lacks", () => {
    const underOld = seal(createSealKeyRing(oldKey), "x", "ctx");
    const retired = createSealKeyRing(nextKey);
    expect(() => open(retired, underOld, "ctx")).toThrow(CryptoError);
    expect(() => open(retired, underOld, "ctx")).toThrow(sealKeyId(oldKey).toString("hex"));
  });

  it("does not open a blob whose key id was swapped for another key of the ring", () => {
    const ring = createSealKeyRing(nextKey, [oldKey]);
    const raw = Buffer.from(seal(createSealKeyRing(oldKey), "x", "ctx"), "base64");
    sealKeyId(nextKey).copy(raw, 1);
    expect(() => open(ring, raw.toString("base64"), "ctx")).toThrow(/authentication failed/);
  });

  it("still opens version 0x01 blobs (no key id) under any key of the ring, and nothing else", () => {
    const ring = createSealKeyRing(nextKey, [oldKey]);
    const v1 = sealV1(oldKey, "from an older deploy", "ctx");
    expect(Buffer.from(v1, "base64")).toHaveLength(1 + GCM_NONCE_BYTES + "from an older deploy".length + 16);
    expect(open(ring, v1, "ctx").toString()).toBe("from an older deploy");
    expect(open(createSealKeyRing(oldKey), v1, "ctx").toString()).toBe("from an older deploy");
    expect(() => open(createSealKeyRing(nextKey), v1, "ctx")).toThrow(CryptoError);
    expect(() => open(ring, v1, "ctx2")).toThrow(CryptoError);
  });

  it("takes a key listed twice only once", () => {
    expect(createSealKeyRing(oldKey, [oldKey, nextKey]).keys.map((k) => k.id)).toEqual([
      sealKeyId(oldKey),
      sealKeyId(nextKey),
    ]);
  });
});
