// Identity over HTTP as an admin and a client use it: accounts with sealed e-mail addresses,
// API keys shown once, rotation with a grace period, revocation, access tokens, the audit log,
// and per-account rate limits with the IETF RateLimit headers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestContext, type TestAccount, type TestContext } from "../../test/helpers/context.js";

type ErrorJson = { error: { code: string; message: string } };
interface AccountJson {
  id: string;
  role: string;
  name: string;
  email: string | null;
  disabled: boolean;
}
interface KeyJson {
  id: string;
  accountId: string;
  prefix: string;
  state: string;
  expiresAt: string | null;
  replacedBy: string | null;
  lastUsedAt: string | null;
}

let t: TestContext;
let admin: TestAccount;

beforeAll(async () => {
  t = await createTestContext();
  admin = await t.account("admin");
});
afterAll(() => t.close());

const call = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
  t.app.request(path, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const asAdmin = (method: string, path: string, body?: unknown) => call(method, path, admin.headers, body);

async function createAccount(body: Record<string, unknown>) {
  const res = await asAdmin("POST", "/v1/accounts", body);
  expect(res.status).toBe(201);
  expect(res.headers.get("cache-control")).toBe("no-store");
  return (await res.json()) as { account: AccountJson; key?: KeyJson; secret?: string };
}

describe("accounts", () => {
  it("creates an account with its first key, shown once; the key lets its holder in as that account", async () => {
    const email = `quant-${Date.now()}@example.com`;
    const made = await createAccount({ role: "quant", name: "Quant desk", email });
    expect(made.account).toMatchObject({ role: "quant", name: "Quant desk", email, disabled: false });
    expect(made.secret).toMatch(/^cvy_[0-9A-Za-z]{38}$/);
    expect(made.key?.prefix).toBe(made.secret?.slice(0, made.key?.prefix.length));
    const me = await call("GET", "/v1/accounts/me", { "x-api-key": made.secret as string });
    expect(await me.json()).toMatchObject({ id: made.account.id, role: "quant", email });
    // Never again: not in the key's view, not in the list.
    const listed = await (await asAdmin("GET", `/v1/keys?accountId=${made.account.id}`)).text();
    expect(listed).not.toContain(made.secret);
    expect(JSON.parse(listed).items).toHaveLength(1);
  });

  it("refuses a second account with the same e-mail address (in any case) with 409", async () => {
    const email = `dup-${Date.now()}@Example.com`;
    await createAccount({ role: "client", name: "first", email });
    const res = await asAdmin("POST", "/v1/accounts", {
      role: "client",
      name: "second",
      email: email.toUpperCase(),
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as ErrorJson).error.code).toBe("CONFLICT");
  });

  it("rejects bad input with 400 and the error body", async () => {
    for (const body of [
      { role: "superuser", name: "x" },
      { role: "client", name: "" },
      { role: "client", name: "x", email: "not-an-address" },
      { role: "client", name: "x", key: { expiresAt: "tomorrow" } },
    ]) {
      const res = await asAdmin("POST", "/v1/accounts", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as ErrorJson).error.code).toBe("VALIDATION_FAILED");
    }
    expect((await asAdmin("PATCH", "/v1/accounts/acc_nope", {})).status).toBe(400);
    expect((await asAdmin("GET", "/v1/accounts/acc_nope")).status).toBe(404);
  });

  it("disabling an account stops every key it has at once, and enabling it lets them in again", async () => {
    const made = await createAccount({ role: "client", name: "to disable" });
    const headers = { "x-api-key": made.secret as string };
    expect((await call("GET", "/v1/accounts/me", headers)).status).toBe(200);
    const disabled = await asAdmin("PATCH", `/v1/accounts/${made.account.id}`, { disabled: true });
    expect(await disabled.json()).toMatchObject({ disabled: true });
    const refused = await call("GET", "/v1/accounts/me", headers);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as ErrorJson).error.message).toMatch(/disabled/);
    await asAdmin("PATCH", `/v1/accounts/${made.account.id}`, { disabled: false });
    expect((await call("GET", "/v1/accounts/me", headers)).status).toBe(200);
  });

  it("lists accounts by role, a page at a time", async () => {
    for (let i = 0; i < 3; i++) await createAccount({ role: "ops", name: `ops ${i}`, key: false });
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page = (await (
        await asAdmin("GET", `/v1/accounts?role=ops&limit=2${after ? `&after=${after}` : ""}`)
      ).json()) as { items: AccountJson[]; nextAfter: string | null };
      expect(page.items.every((a) => a.role === "ops")).toBe(true);
      seen.push(...page.items.map((a) => a.id));
      after = page.nextAfter;
    } while (after !== null);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(new Set(seen).size).toBe(seen.length);
  });
});

describe("keys", () => {
  it("rotates a key: the new one works, the old one until its grace period ends, then not", async () => {
    const made = await createAccount({ role: "client", name: "rotating" });
    const oldKey = made.secret as string;
    const res = await asAdmin("POST", `/v1/keys/${made.key?.id}/rotate`, { graceSeconds: 3600 });
    expect(res.status).toBe(200);
    const rotated = (await res.json()) as { key: KeyJson; secret: string; previous: KeyJson };
    expect(rotated.previous).toMatchObject({ id: made.key?.id, replacedBy: rotated.key.id, state: "active" });
    expect(Date.parse(rotated.previous.expiresAt as string)).toBeGreaterThan(Date.now() + 3500_000);
    for (const key of [oldKey, rotated.secret])
      expect((await call("GET", "/v1/accounts/me", { "x-api-key": key })).status).toBe(200);

    // Rotated again with no grace: the key it replaced stops at once.
    const again = (await (
      await asAdmin("POST", `/v1/keys/${rotated.key.id}/rotate`, { graceSeconds: 0 })
    ).json()) as {
      secret: string;
    };
    expect((await call("GET", "/v1/accounts/me", { "x-api-key": rotated.secret })).status).toBe(401);
    expect((await call("GET", "/v1/accounts/me", { "x-api-key": again.secret })).status).toBe(200);
  });

  it("revokes a key, and the access tokens exchanged for it, at once", async () => {
    const made = await createAccount({ role: "client", name: "revoked" });
    const headers = { "x-api-key": made.secret as string };
    const token = (await (await call("POST", "/v1/tokens", headers)).json()) as {
      access_token: string;
      token_type: string;
      expires_in: number;
    };
    expect(token).toMatchObject({ token_type: "Bearer", expires_in: 900 });
    const bearer = { authorization: `Bearer ${token.access_token}` };
    expect(await (await call("GET", "/v1/accounts/me", bearer)).json()).toMatchObject({
      id: made.account.id,
    });

    const revoked = await asAdmin("POST", `/v1/keys/${made.key?.id}/revoke`);
    expect(await revoked.json()).toMatchObject({ state: "revoked" });
    for (const h of [headers, bearer]) {
      const res = await call("GET", "/v1/accounts/me", h);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/error="invalid_token"/);
    }
    expect((await asAdmin("POST", `/v1/keys/${made.key?.id}/rotate`)).status).toBe(409);
  });

  it("takes an API key for a token, never a token for a token", async () => {
    const made = await createAccount({ role: "client", name: "tokens" });
    const token = (await (
      await call("POST", "/v1/tokens", { "x-api-key": made.secret as string })
    ).json()) as {
      access_token: string;
    };
    const res = await call("POST", "/v1/tokens", { authorization: `Bearer ${token.access_token}` });
    expect(res.status).toBe(401);
  });

  it("refuses an expired key", async () => {
    const made = await createAccount({
      role: "client",
      name: "expired",
      key: { expiresAt: new Date(Date.now() - 1000).toISOString() },
    });
    const res = await call("GET", "/v1/accounts/me", { "x-api-key": made.secret as string });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorJson).error.message).toMatch(/expired/);
  });

  it("finds keys by the prefix a scanner reports, and records when each was last used", async () => {
    const made = await createAccount({ role: "client", name: "scanned" });
    await call("GET", "/v1/accounts/me", { "x-api-key": made.secret as string });
    await t.deps.services.identity.flushLastUsed();
    const found = (await (
      await asAdmin("GET", `/v1/keys?prefix=${encodeURIComponent((made.secret as string).slice(0, 10))}`)
    ).json()) as { items: KeyJson[] };
    expect(found.items.map((k) => k.id)).toEqual([made.key?.id]);
    expect(Date.parse(found.items[0]?.lastUsedAt ?? "")).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe("the audit log", () => {
  it("records who made each change, newest first, without any secret", async () => {
    const made = await createAccount({
      role: "client",
      name: "audited",
      email: `audit-${Date.now()}@example.com`,
    });
    await asAdmin("POST", `/v1/keys/${made.key?.id}/rotate`);
    await asAdmin("POST", `/v1/keys/${made.key?.id}/revoke`);
    const res = await asAdmin("GET", `/v1/audit-events?targetId=${made.key?.id}`);
    const text = await res.text();
    const events = (JSON.parse(text) as { items: { action: string; actor: { accountId: string } }[] }).items;
    expect(events.map((e) => e.action)).toEqual(["key.revoke", "key.rotate", "key.create"]);
    expect(events.every((e) => e.actor.accountId === admin.account.id)).toBe(true);
    expect(text).not.toContain(made.secret);
    const all = await (await asAdmin("GET", "/v1/audit-events?limit=200")).text();
    expect(all).not.toContain(made.secret);
    expect(all).not.toContain(made.account.email);
  });
});

describe("rate limits", () => {
  let limited: TestContext;
  beforeAll(async () => {
    limited = await createTestContext({ RATE_LIMIT_CLIENT: "3", RATE_LIMIT_ANONYMOUS: "2" });
  });
  afterAll(() => limited.close());

  it("gives each account its role's limit, with RateLimit headers, then 429 with Retry-After", async () => {
    const [a, b] = [await limited.account("client"), await limited.account("client")];
    const me = (headers: Record<string, string>) => limited.app.request("/v1/accounts/me", { headers });
    for (let remaining = 2; remaining >= 0; remaining--) {
      const res = await me(a.headers);
      expect(res.status).toBe(200);
      expect(res.headers.get("ratelimit-policy")).toBe('"account";q=3;w=60');
      expect(res.headers.get("ratelimit")).toMatch(new RegExp(`^"account";r=${remaining};t=\\d+$`));
    }
    const refused = await me(a.headers);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refused.headers.get("ratelimit")).toMatch(/^"account";r=0;t=\d+$/);
    expect(((await refused.json()) as ErrorJson).error.code).toBe("RATE_LIMITED");
    // Another account of the same role has its own window.
    expect((await me(b.headers)).status).toBe(200);
  });

  it("counts every anonymous caller together, as the anonymous tenant", async () => {
    const list = (from: string) =>
      limited.app.request("/v1/files", {}, { server: { incoming: { socket: { remoteAddress: from } } } });
    expect((await list("192.0.2.1")).status).toBe(200);
    expect((await list("192.0.2.2")).status).toBe(200);
    expect((await list("192.0.2.3")).status).toBe(429);
  });
});
