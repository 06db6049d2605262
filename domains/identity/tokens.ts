// Access tokens: JWTs (HS256, via `jose`) exchanged for an API key, short-lived, carrying `sub`
// (the account), `role`, `akid` (the API key they were exchanged for, so revoking the key revokes
// them), `iat`, `exp`, `jti`, and `kid` in the header naming the signing key, so keys can rotate:
// JWT_SIGNING_KEY signs, JWT_VERIFY_KEYS_ACCEPTED still verify. Verification allows HS256 only:
// `alg: none` and any other algorithm are refused, so no algorithm confusion is possible.
import { createHmac, webcrypto } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import { randomId } from "../../lib/ids.js";
import { decodeKey } from "../../lib/sealing.js";
import { ROLES, type Role } from "./caller.js";

export const TOKEN_ALGORITHM = "HS256";
export const TOKEN_ISSUER = "conveyor";
export const TOKEN_AUDIENCE = "conveyor-api";

interface SigningKey {
  kid: string;
  key: webcrypto.CryptoKey;
}

export interface TokenKeys {
  signing: SigningKey;
  /** Every key a token may verify with, by kid (the signing key included). */
  byKid: ReadonlyMap<string, webcrypto.CryptoKey>;
}

/** A key's id: the first 8 bytes of an HMAC of a fixed label under it, hex. Safe to show. */
const keyId = (key: Buffer) =>
  createHmac("sha256", key).update("conveyor/identity/jwt-kid/v1").digest().subarray(0, 8).toString("hex");

// Imported once: handing jose raw bytes would import the key again on every sign and verify,
// which costs more than the HMAC itself.
const hmacKey = (key: Buffer) =>
  webcrypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);

export async function createTokenKeys(signing: string, accepted: readonly string[] = []): Promise<TokenKeys> {
  const byKid = new Map<string, webcrypto.CryptoKey>();
  for (const base64 of [signing, ...accepted]) {
    const key = decodeKey(base64);
    byKid.set(keyId(key), await hmacKey(key));
  }
  const signingKey = decodeKey(signing);
  const kid = keyId(signingKey);
  return { signing: { kid, key: byKid.get(kid) as webcrypto.CryptoKey }, byKid };
}

export interface TokenClaims {
  accountId: string;
  role: Role;
  keyId: string;
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  jti: string;
}

export async function issueToken(
  keys: TokenKeys,
  claims: TokenClaims,
  ttlSeconds: number,
): Promise<IssuedToken> {
  const jti = randomId();
  const token = await new SignJWT({ role: claims.role, akid: claims.keyId })
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: "JWT", kid: keys.signing.kid })
    .setSubject(claims.accountId)
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .setJti(jti)
    .sign(keys.signing.key);
  return { token, expiresIn: ttlSeconds, jti };
}

/** Why a token was refused, for the log and the 401's error_description (never the token). */
export class TokenError extends Error {
  override readonly name = "TokenError";
}

/** The claims of a token this deployment signed and that has not expired; a TokenError otherwise. */
export async function verifyToken(
  keys: TokenKeys,
  token: string,
  clockToleranceSeconds: number,
): Promise<TokenClaims> {
  return (await verifyTokenExpiry(keys, token, clockToleranceSeconds)).claims;
}

/** verifyToken, and when the token stops being valid (ms, its exp plus the tolerance). */
export async function verifyTokenExpiry(
  keys: TokenKeys,
  token: string,
  clockToleranceSeconds: number,
): Promise<{ claims: TokenClaims; validUntilMs: number }> {
  try {
    const { payload } = await jwtVerify(
      token,
      (header) => {
        const key = header.kid === undefined ? undefined : keys.byKid.get(header.kid);
        if (!key) throw new TokenError("the token's kid names no key of this deployment");
        return key;
      },
      {
        algorithms: [TOKEN_ALGORITHM],
        issuer: TOKEN_ISSUER,
        audience: TOKEN_AUDIENCE,
        clockTolerance: clockToleranceSeconds,
        requiredClaims: ["sub", "exp", "iat", "jti"],
        typ: "JWT",
      },
    );
    const { sub, role, akid, exp } = payload as {
      sub?: unknown;
      role?: unknown;
      akid?: unknown;
      exp?: number;
    };
    if (typeof sub !== "string" || typeof akid !== "string" || !(ROLES as readonly unknown[]).includes(role))
      throw new TokenError("the token's claims are not ours");
    return {
      claims: { accountId: sub, role: role as Role, keyId: akid },
      validUntilMs: ((exp as number) + clockToleranceSeconds) * 1000,
    };
  } catch (err) {
    if (err instanceof TokenError) throw err;
    if (err instanceof errors.JWTExpired) throw new TokenError("the token has expired");
    if (err instanceof errors.JOSEError) throw new TokenError(`the token is not valid (${err.code})`);
    throw err;
  }
}
