// Every route of the app, walked from its route table (a route added tomorrow is walked too),
// with every kind of credential: none, malformed, an expired token, a token signed with another
// key, `alg: none`, a revoked key, an access token, and an API key of each role. Each answer is
// checked against the route's own declaration (http/access.ts), and so is /openapi.json.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROLES, type Role } from "../domains/identity/caller.js";
import { COMMAND_LINE_ACTOR } from "../domains/identity/service.js";
import { createTokenKeys, issueToken } from "../domains/identity/tokens.js";
import { ACCESS_EXTENSION, type Access, anonymousAllowed } from "../http/access.js";
import { generateKey } from "../lib/sealing.js";
import {
  createTestContext,
  TEST_IDENTITY_ENV,
  type TestAccount,
  type TestContext,
} from "../test/helpers/context.js";
import { peer } from "../test/helpers/http.js";

interface Endpoint {
  method: string;
  path: string;
  access: Access | undefined;
}

type RouteEntry = { method: string; path: string; handler: { access?: Access } };

const covers = (pattern: string, path: string) =>
  pattern === path ||
  (pattern.endsWith("/*") && (path === pattern.slice(0, -2) || path.startsWith(pattern.slice(0, -1))));

/** The app's endpoints and the declaration that guards each: its own, or a `use` over its path. */
function endpoints(routes: readonly RouteEntry[]): Endpoint[] {
  const guards = routes.filter((r) => r.handler.access !== undefined);
  const seen = new Map<string, Endpoint>();
  for (const r of routes) {
    // Middleware over every path (request context, body limit) is not an endpoint.
    if (r.path === "/*") continue;
    const key = `${r.method} ${r.path}`;
    if (seen.has(key)) continue;
    const own = guards.find((g) => g.method === r.method && g.path === r.path);
    const over = guards.find((g) => g.method === "ALL" && covers(g.path, r.path));
    seen.set(key, { method: r.method, path: r.path, access: (own ?? over)?.handler.access });
  }
  return [...seen.values()];
}

/** A concrete URL for a route pattern: every parameter filled, a trailing wildcard dropped. */
const concrete = (path: string) =>
  path
    .replace(/:queue\b(\{[^}]*\})?/g, "alert-ingestion")
    .replace(/:\w+(\{[^}]*\})?/g, "walk-x")
    .replace(/\/\*$/, "/");

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

describe("every route, every credential, against its declaration", () => {
  let t: TestContext;
  const keys: Partial<Record<Role, TestAccount>> = {};
  let revoked: TestAccount;
  let token: string;
  const bad: Record<string, Record<string, string>> = {};

  beforeAll(async () => {
    t = await createTestContext({ ADMIN_USER: "operator", ADMIN_PASSWORD: "a-long-operator-password" });
    for (const role of ROLES) keys[role] = await t.account(role);
    revoked = await t.account("client");
    await t.deps.services.identity.revokeKey(COMMAND_LINE_ACTOR, revoked.keyId);
    const client = keys.client as TestAccount;
    const claims = { accountId: client.account.id, role: "client" as const, keyId: client.keyId };
    const ours = await createTokenKeys(TEST_IDENTITY_ENV.JWT_SIGNING_KEY);
    token = (await issueToken(ours, claims, 900)).token;

    // Expired an hour ago, far past the clock tolerance; otherwise as we sign them.
    const { SignJWT } = await import("jose");
    const expired = await new SignJWT({ role: "client", akid: client.keyId })
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: ours.signing.kid })
      .setSubject(client.account.id)
      .setIssuer("conveyor")
      .setAudience("conveyor-api")
      .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .setJti("expired")
      .sign(ours.signing.key);
    // Another key, under our kid: only the signature can tell.
    const other = await createTokenKeys(generateKey());
    const forged = await new SignJWT({ role: "admin", akid: client.keyId })
      .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: ours.signing.kid })
      .setSubject(client.account.id)
      .setIssuer("conveyor")
      .setAudience("conveyor-api")
      .setIssuedAt()
      .setExpirationTime("10m")
      .setJti("forged")
      .sign(other.signing.key);
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${base64url({ alg: "none", typ: "JWT", kid: ours.signing.kid })}.${base64url({
      sub: client.account.id,
      role: "admin",
      akid: client.keyId,
      iss: "conveyor",
      aud: "conveyor-api",
      iat: now,
      exp: now + 600,
      jti: "none",
    })}.`;
    bad.malformed = { authorization: "Token not-a-scheme-we-take" };
    bad["a key that is no key"] = { "x-api-key": "cvy_0000000000000000000000000000000000000000" };
    bad["an expired token"] = { authorization: `Bearer ${expired}` };
    bad["a token signed with another key"] = { authorization: `Bearer ${forged}` };
    // A well-formed token of another deployment: a key id we do not know.
    bad["a token with an unknown key id"] = {
      authorization: `Bearer ${(await issueToken(other, claims, 900)).token}`,
    };
    bad["alg: none"] = { authorization: `Bearer ${unsigned}` };
    bad["a revoked key"] = revoked.headers;
  });
  afterAll(() => t.close());

  // Each request from an address of its own: the failed-authentication limit is per address.
  let address = 0;
  /** The answer's status and error body (a stream, such as an event stream, is closed unread). */
  const call = async (e: Endpoint, headers: Record<string, string> = {}) => {
    address++;
    const res = await t.app.request(
      concrete(e.path),
      { method: e.method === "ALL" ? "GET" : e.method, headers },
      peer(`10.${(address >> 16) & 255}.${(address >> 8) & 255}.${address & 255}`),
    );
    const isJson = res.headers.get("content-type")?.startsWith("application/json") ?? false;
    const body = isJson ? ((await res.json()) as { error?: { code: string } }) : undefined;
    if (!isJson) await res.body?.cancel();
    return { status: res.status, headers: res.headers, body };
  };
  const label = (e: Endpoint, what: string) => `${e.method} ${e.path} with ${what}`;

  it("finds a declaration on every endpoint", () => {
    const all = endpoints(t.app.routes as unknown as RouteEntry[]);
    expect(all.length).toBeGreaterThan(20);
    expect(all.filter((e) => e.access === undefined).map((e) => `${e.method} ${e.path}`)).toEqual([]);
  });

  it("answers each endpoint as its declaration says, for every credential", async () => {
    const config = t.deps.config;
    for (const e of endpoints(t.app.routes as unknown as RouteEntry[])) {
      const access = e.access as Access;
      const isPublic = access.anonymous === "public";

      const anonymous = await call(e);
      if (isPublic || anonymousAllowed(access, config))
        expect([401, 403], label(e, "no credential")).not.toContain(anonymous.status);
      else {
        expect(anonymous.status, label(e, "no credential")).toBe(401);
        expect(anonymous.headers.get("www-authenticate"), label(e, "no credential")).toMatch(
          access.operatorLogin ? /^Basic realm="conveyor"/ : /^Bearer realm="conveyor"/,
        );
      }

      for (const [what, headers] of Object.entries(bad)) {
        const res = await call(e, headers);
        if (isPublic) expect([401, 403], label(e, what)).not.toContain(res.status);
        else {
          expect(res.status, label(e, what)).toBe(401);
          expect(res.body?.error?.code).toBe("UNAUTHORIZED");
        }
      }

      for (const role of ROLES) {
        const res = await call(e, keys[role]?.headers);
        const what = `a ${role} key`;
        expect(res.status, label(e, what)).toBeLessThan(500);
        if (isPublic || access.roles.includes(role))
          expect([401, 403], label(e, what)).not.toContain(res.status);
        else expect(res.status, label(e, what)).toBe(403);
      }

      const withToken = await call(e, { authorization: `Bearer ${token}` });
      if (isPublic) expect([401, 403], label(e, "a token")).not.toContain(withToken.status);
      else if (access.apiKeyOnly) expect(withToken.status, label(e, "a token")).toBe(401);
      else if (access.roles.includes("client"))
        expect([401, 403], label(e, "a client's token")).not.toContain(withToken.status);
      else expect(withToken.status, label(e, "a client's token")).toBe(403);
    }
  }, 120_000);

  it("documents each /v1 operation's declaration and security in /openapi.json", async () => {
    const doc = (await (await t.app.request("/openapi.json")).json()) as {
      paths: Record<
        string,
        Record<string, { security?: unknown[]; [ACCESS_EXTENSION]?: { roles: string[] } }>
      >;
    };
    const guarded = endpoints(t.app.routes as unknown as RouteEntry[]).filter((e) =>
      e.path.startsWith("/v1/"),
    );
    expect(guarded.length).toBeGreaterThan(10);
    for (const e of guarded) {
      const path = e.path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");
      const operation = doc.paths[path]?.[e.method.toLowerCase()];
      expect(operation, `${e.method} ${path} is in /openapi.json`).toBeDefined();
      expect(operation?.[ACCESS_EXTENSION]?.roles, `${e.method} ${path}`).toEqual(e.access?.roles);
      expect(operation?.security?.length, `${e.method} ${path} has security`).toBeGreaterThan(0);
    }
  });
});
