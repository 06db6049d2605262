import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  API_KEY_PREFIX,
  apiKeyDisplayPrefix,
  generateApiKey,
  hashApiKey,
  isWellFormedApiKey,
} from "./api-keys.js";
import { createEmailKeys, emailIndex, openEmail, sealEmail } from "./email.js";
import { createKeyCache } from "./key-cache.js";
import type { KeyGrantRow } from "./queries.js";
import {
  createTokenKeys,
  issueToken,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  TokenError,
  verifyToken,
} from "./tokens.js";

const key32 = () => randomBytes(32).toString("base64");

describe("API keys", () => {
  it("are cvy_ and 38 base62 characters, different every time, with a checksum that holds", () => {
    const keys = Array.from({ length: 200 }, generateApiKey);
    expect(new Set(keys).size).toBe(keys.length);
    for (const key of keys) {
      expect(key).toMatch(/^cvy_[0-9A-Za-z]{38}$/);
      expect(isWellFormedApiKey(key)).toBe(true);
    }
  });

  it("refuses a mistyped or made-up key without a lookup", () => {
    const key = generateApiKey();
    const last = key.at(-1) === "a" ? "b" : "a";
    expect(isWellFormedApiKey(key.slice(0, -1) + last)).toBe(false);
    const middle = key.slice(0, 10) + (key[10] === "x" ? "y" : "x") + key.slice(11);
    expect(isWellFormedApiKey(middle)).toBe(false);
    expect(isWellFormedApiKey(`${API_KEY_PREFIX}${"A".repeat(38)}`)).toBe(false);
    expect(isWellFormedApiKey(`${key} `)).toBe(false);
    expect(isWellFormedApiKey("")).toBe(false);
  });

  it("keeps an HMAC under the server key and a display prefix, never the key", () => {
    const key = generateApiKey();
    const server = randomBytes(32);
    expect(hashApiKey(server, key).equals(hashApiKey(server, key))).toBe(true);
    expect(hashApiKey(randomBytes(32), key).equals(hashApiKey(server, key))).toBe(false);
    expect(apiKeyDisplayPrefix(key)).toBe(key.slice(0, 12));
  });
});

describe("e-mail addresses at rest", () => {
  const keys = createEmailKeys(randomBytes(32));

  it("open only for the account they were sealed for", () => {
    const sealed = sealEmail(keys, "acc_1", "Ada@Example.org");
    expect(sealed).not.toContain("Ada");
    expect(openEmail(keys, "acc_1", sealed)).toBe("Ada@Example.org");
    expect(() => openEmail(keys, "acc_2", sealed)).toThrow();
  });

  it("index one mailbox however it is spelled, and nothing else", () => {
    expect(emailIndex(keys, " Ada@Example.org ").equals(emailIndex(keys, "ada@example.org"))).toBe(true);
    expect(emailIndex(keys, "ada@example.org").equals(emailIndex(keys, "bob@example.org"))).toBe(false);
    const other = createEmailKeys(randomBytes(32));
    expect(emailIndex(other, "ada@example.org").equals(emailIndex(keys, "ada@example.org"))).toBe(false);
  });
});

describe("access tokens", () => {
  const signing = key32();
  let keys: TokenKeys;
  beforeAll(async () => {
    keys = await createTokenKeys(signing);
  });
  const claims = { accountId: "acc_1", role: "quant" as const, keyId: "key_1" };
  const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = () => Math.floor(Date.now() / 1000);
  const payload = {
    sub: "acc_1",
    role: "quant",
    akid: "key_1",
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    jti: "j",
  };

  it("carry sub, role, the key, iat, exp, jti and the signing key's kid", async () => {
    const issued = await issueToken(keys, claims, 900);
    const [header, body] = issued.token
      .split(".")
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(header).toEqual({ alg: "HS256", typ: "JWT", kid: keys.signing.kid });
    expect(body).toMatchObject({ sub: "acc_1", role: "quant", akid: "key_1", jti: issued.jti });
    expect(body.exp - body.iat).toBe(900);
    expect(await verifyToken(keys, issued.token, 30)).toEqual(claims);
  });

  it("still verify under a key kept as accepted after a rotation, and not after it is dropped", async () => {
    const old = await issueToken(keys, claims, 900);
    const next = key32();
    expect(await verifyToken(await createTokenKeys(next, [signing]), old.token, 30)).toEqual(claims);
    await expect(verifyToken(await createTokenKeys(next), old.token, 30)).rejects.toThrow(TokenError);
  });

  it("refuse alg none, another algorithm, another key, an expired token and a tampered one", async () => {
    const kid = keys.signing.kid;
    const none = `${encode({ alg: "none", typ: "JWT", kid })}.${encode({ ...payload, iat: now(), exp: now() + 60 })}.`;
    await expect(verifyToken(keys, none, 30)).rejects.toThrow(TokenError);

    const secret = new Uint8Array(Buffer.from(signing, "base64"));
    const hs512 = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS512", kid })
      .setIssuedAt()
      .setExpirationTime("1m")
      .sign(secret);
    await expect(verifyToken(keys, hs512, 30)).rejects.toThrow(TokenError);

    const stranger = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", kid })
      .setIssuedAt()
      .setExpirationTime("1m")
      .sign(randomBytes(32));
    await expect(verifyToken(keys, stranger, 30)).rejects.toThrow(TokenError);

    const expired = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid })
      .setIssuedAt(now() - 600)
      .setExpirationTime(now() - 31)
      .sign(secret);
    await expect(verifyToken(keys, expired, 30)).rejects.toThrow(/expired/);
    // Within the stated clock tolerance it still passes.
    const justExpired = await new SignJWT(payload)
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid })
      .setIssuedAt(now() - 600)
      .setExpirationTime(now() - 5)
      .sign(secret);
    expect(await verifyToken(keys, justExpired, 30)).toEqual(claims);

    const good = (await issueToken(keys, claims, 900)).token.split(".");
    const tampered = [
      good[0],
      encode({ ...payload, role: "admin", iat: now(), exp: now() + 60 }),
      good[2],
    ].join(".");
    await expect(verifyToken(keys, tampered, 30)).rejects.toThrow(TokenError);
  });
});

describe("the key cache", () => {
  const grant = (id: string, accountId = "acc_1"): KeyGrantRow => ({
    id,
    accountId,
    role: "client",
    expiresAt: null,
    revokedAt: null,
    accountDisabledAt: null,
  });

  it("answers by key and by id, and forgets a key evicted by id or by account", () => {
    const cache = createKeyCache({ max: 10, ttlMs: 60_000 });
    cache.put({ hash: "h1", grant: grant("k1") }, cache.epoch());
    cache.put({ hash: "h2", grant: grant("k2", "acc_2") }, cache.epoch());
    expect(cache.byHash("h1")?.id).toBe("k1");
    expect(cache.byId("k1")?.id).toBe("k1");
    cache.evictKey("k1");
    expect(cache.byHash("h1")).toBeNull();
    expect(cache.byId("k1")).toBeNull();
    cache.evictAccount("acc_2");
    expect(cache.byHash("h2")).toBeNull();
  });

  it("does not keep a lookup that straddled an eviction (it may have read the key before its revocation)", () => {
    const cache = createKeyCache({ max: 10, ttlMs: 60_000 });
    const started = cache.epoch();
    cache.evictKey("k1");
    cache.put({ hash: "h1", grant: grant("k1") }, started);
    expect(cache.byHash("h1")).toBeNull();
  });

  it("remembers unknown keys by hash, expires entries, and holds at most max", () => {
    let now = 0;
    const cache = createKeyCache({ max: 2, ttlMs: 1_000, now: () => now });
    cache.put({ hash: "nobody", grant: undefined }, cache.epoch());
    expect(cache.byHash("nobody")).toBeUndefined();
    now = 1_000;
    expect(cache.byHash("nobody")).toBeNull();
    for (const i of [1, 2, 3]) cache.put({ hash: `h${i}`, grant: grant(`k${i}`) }, cache.epoch());
    expect(cache.byHash("h1")).toBeNull();
    expect(cache.byHash("h3")?.id).toBe("k3");
  });
});
