// The identity domain: accounts and their roles, API keys (shown once, kept as an HMAC, rotated
// with a grace period, revoked everywhere within a second), access tokens exchanged for a key, and
// the audit log of every change an admin makes. Authentication reads through an in-process cache
// of keys (key-cache.ts), so a request with a known key costs no query.
import type { Redis } from "ioredis";
import { AppError } from "../../lib/errors.js";
import { randomId } from "../../lib/ids.js";
import type { Logger } from "../../lib/logger.js";
import { createRateLimit, type RateLimit, type RateLimitState } from "../../lib/rate-limit.js";
import { createRedis } from "../../lib/redis.js";
import { decodeKey } from "../../lib/sealing.js";
import type { Connections } from "../connections.js";
import type { NotificationsService } from "../notifications/service.js";
import { apiKeyDisplayPrefix, generateApiKey, hashApiKey, isWellFormedApiKey } from "./api-keys.js";
import { ANONYMOUS_TENANT, type Caller, ROLES, type Role, tenantOf } from "./caller.js";
import type { IdentityConfig } from "./config.js";
import { createEmailKeys, type EmailKeys, emailIndex, openEmail, sealEmail } from "./email.js";
import { createKeyCache } from "./key-cache.js";
import * as q from "./queries.js";
import {
  createTokenKeys,
  type IssuedToken,
  issueToken,
  type TokenClaims,
  TokenError,
  type TokenKeys,
  verifyTokenExpiry,
} from "./tokens.js";

/** Who made a change, for the audit log: an API caller, or the keys command (no account). */
export interface Actor {
  accountId: string | null;
  keyId: string | null;
  requestId: string | null;
}

export const COMMAND_LINE_ACTOR: Actor = { accountId: null, keyId: null, requestId: null };

/** How long before a key expires its owner is told (`key.expiring`): a week. */
export const KEY_EXPIRY_NOTICE_SECONDS = 7 * 86_400;

export type AccountCaller = Extract<Caller, { kind: "account" }>;

/** A credential that does not let anyone in; the message says why (never the credential). */
export class AuthenticationError extends Error {
  override readonly name = "AuthenticationError";
}

export interface AccountView {
  id: string;
  role: Role;
  name: string;
  email: string | null;
  disabled: boolean;
  createdAt: string;
  updatedAt: string;
}

export type KeyState = "active" | "expired" | "revoked";

export interface KeyView {
  id: string;
  accountId: string;
  prefix: string;
  name: string;
  state: KeyState;
  expiresAt: string | null;
  revokedAt: string | null;
  replacedBy: string | null;
  lastUsedAt: string | null;
  createdAt: string;
}

export interface AuditEventView {
  id: number;
  at: string;
  actor: { accountId: string | null; keyId: string | null };
  action: string;
  target: { type: string; id: string };
  details: Record<string, unknown>;
  requestId: string | null;
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

function keyState(k: { revokedAt: Date | null; expiresAt: Date | null }, now = Date.now()): KeyState {
  if (k.revokedAt !== null) return "revoked";
  if (k.expiresAt !== null && k.expiresAt.getTime() <= now) return "expired";
  return "active";
}

const keyView = (k: q.ApiKeyRow): KeyView => ({
  id: k.id,
  accountId: k.accountId,
  prefix: k.prefix,
  name: k.name,
  state: keyState(k),
  expiresAt: iso(k.expiresAt),
  revokedAt: iso(k.revokedAt),
  replacedBy: k.replacedBy,
  lastUsedAt: iso(k.lastUsedAt),
  createdAt: k.createdAt.toISOString(),
});

/** The unique index of e-mail addresses refused a second account with one. */
const isEmailTaken = (err: unknown) =>
  (err as { code?: string }).code === "23505" &&
  (err as { constraint_name?: string }).constraint_name === "accounts_email_index_key";

export type IdentityService = ReturnType<typeof createIdentityService>;

export function createIdentityService(
  config: IdentityConfig & { QUEUE_PREFIX: string; REDIS_URL: string },
  { database, redis, logger }: Pick<Connections, "database" | "redis" | "logger">,
  /** Where the account hears of changes to its keys (absent: in the keys command). */
  { notifications }: { notifications?: NotificationsService } = {},
) {
  const sql = database.sql;
  const channel = `${config.QUEUE_PREFIX}:identity:evictions`;

  // Built on first use, like the secrets domain's keys: a worker never authenticates anyone, so
  // only the processes that serve the API must configure them (identityConfigIssues).
  let keys: { hash: Buffer; email: EmailKeys; tokens: Promise<TokenKeys> } | undefined;
  function serverKeys() {
    if (keys) return keys;
    const { API_KEY_HASH_KEY: hash, ACCOUNT_DATA_KEY: data, JWT_SIGNING_KEY: signing } = config;
    if (hash === undefined || data === undefined || signing === undefined)
      throw new AppError(
        "INTERNAL",
        "identity is not configured on this server (API_KEY_HASH_KEY, ACCOUNT_DATA_KEY, JWT_SIGNING_KEY)",
      );
    keys = {
      hash: decodeKey(hash),
      email: createEmailKeys(decodeKey(data)),
      tokens: createTokenKeys(signing, config.JWT_VERIFY_KEYS_ACCEPTED),
    };
    return keys;
  }

  // ---- Request limits, per tenant by role, and failed authentications per address --------------
  const limitOfRole: Record<Role | typeof ANONYMOUS_TENANT, number> = {
    admin: config.RATE_LIMIT_ADMIN,
    ops: config.RATE_LIMIT_OPS,
    quant: config.RATE_LIMIT_QUANT,
    client: config.RATE_LIMIT_CLIENT,
    anonymous: config.RATE_LIMIT_ANONYMOUS,
  };
  // While Redis is down each process counts alone: a limit that refused every request while Redis
  // is away would turn a Redis outage into an outage of the routes that do not need Redis.
  const requestLimits = Object.fromEntries(
    [...ROLES, ANONYMOUS_TENANT].map((role) => [
      role,
      createRateLimit(redis, {
        keyPrefix: `${config.QUEUE_PREFIX}:identity:requests:${role}`,
        points: limitOfRole[role as Role],
        windowSeconds: config.RATE_LIMIT_WINDOW_SECONDS,
        message: "too many requests for this account; retry later",
        whenRedisIsDown: "memory",
      }),
    ]),
  ) as Record<Role | typeof ANONYMOUS_TENANT, RateLimit>;
  const failedAuthentications = createRateLimit(redis, {
    keyPrefix: `${config.QUEUE_PREFIX}:identity:failed-auth`,
    points: config.AUTH_FAILURES_PER_ADDRESS,
    windowSeconds: 60,
    message: "too many failed authentications from this address; retry later",
    whenRedisIsDown: "memory",
  });
  // Addresses past their failures, until when (ms): refused without a Redis call or a lookup.
  const blockedAddresses = new Map<string, number>();

  const cache = createKeyCache({
    max: config.API_KEY_CACHE_MAX,
    ttlMs: config.API_KEY_CACHE_TTL_SECONDS * 1000,
  });

  // ---- Evictions over Redis pub/sub -----------------------------------------------------------
  // The cache is trusted only while this process listens: a process that cannot hear revocations
  // asks Postgres every time, and forgets everything when it hears again.
  let subscriber: Redis | undefined;
  let listening = false;
  function listen() {
    if (subscriber) return;
    subscriber = createRedis(config.REDIS_URL, "worker", logger, { connectionName: "identity-evictions" });
    subscriber.on("message", (_channel: string, message: string) => {
      try {
        const { key, account } = JSON.parse(message) as { key?: string; account?: string };
        if (key !== undefined) cache.evictKey(key);
        if (account !== undefined) cache.evictAccount(account);
      } catch {
        cache.clear();
      }
    });
    subscriber.on("ready", () => {
      subscriber?.subscribe(channel).then(
        () => {
          cache.clear();
          listening = true;
        },
        (err: Error) => logger.warn({ err: { message: err.message } }, "identity: could not subscribe"),
      );
    });
    subscriber.on("close", () => {
      listening = false;
    });
  }

  async function publishEviction(message: { key?: string; account?: string }): Promise<void> {
    if (message.key !== undefined) cache.evictKey(message.key);
    if (message.account !== undefined) cache.evictAccount(message.account);
    try {
      await redis.publish(channel, JSON.stringify(message));
    } catch (err) {
      // Committed in Postgres already: other processes drop the key within API_KEY_CACHE_TTL_SECONDS.
      logger.warn(
        { err: { message: (err as Error).message }, ...message },
        "identity: eviction not published; other API processes see it within API_KEY_CACHE_TTL_SECONDS",
      );
    }
  }

  // ---- last_used_at, batched --------------------------------------------------------------------
  const lastUsed = new Map<string, number>();
  async function flushLastUsed(): Promise<void> {
    if (lastUsed.size === 0) return;
    const batch = new Map(lastUsed);
    lastUsed.clear();
    try {
      await q.touchApiKeys(sql, batch);
    } catch (err) {
      // Kept for the next flush, unless a newer use has been recorded meanwhile.
      for (const [id, at] of batch) if ((lastUsed.get(id) ?? 0) < at) lastUsed.set(id, at);
      logger.warn(
        { err: { message: (err as Error).message } },
        "identity: last_used_at not written; retrying",
      );
    }
  }
  const flushTimer = setInterval(() => void flushLastUsed(), config.API_KEY_LAST_USED_FLUSH_SECONDS * 1000);
  flushTimer.unref();

  // Tokens verified here recently, until they expire: a client sends the same token for its whole
  // life, and checking a signature costs more than the rest of authentication. A token is found
  // only by its exact text, so nothing unverified is ever taken from here; whether its key still
  // stands is checked on every request all the same.
  const verifiedTokens = new Map<string, { claims: TokenClaims; validUntilMs: number }>();
  async function verifiedClaims(token: string): Promise<TokenClaims> {
    const known = verifiedTokens.get(token);
    if (known && known.validUntilMs > Date.now()) return known.claims;
    if (known) verifiedTokens.delete(token);
    const verified = await verifyTokenExpiry(
      await serverKeys().tokens,
      token,
      config.JWT_CLOCK_TOLERANCE_SECONDS,
    );
    if (config.API_KEY_CACHE_MAX > 0) {
      if (verifiedTokens.size >= config.API_KEY_CACHE_MAX)
        verifiedTokens.delete(verifiedTokens.keys().next().value as string);
      verifiedTokens.set(token, verified);
    }
    return verified.claims;
  }

  // ---- Authentication ---------------------------------------------------------------------------
  async function grantBy(lookup: { hash: Buffer } | { id: string }): Promise<q.KeyGrantRow | undefined> {
    listen();
    const useCache = listening;
    if ("hash" in lookup) {
      const hash = lookup.hash.toString("base64");
      const cached = useCache ? cache.byHash(hash) : null;
      if (cached !== null) return cached;
      const epoch = cache.epoch();
      const grant = await q.findGrantByHash(sql, lookup.hash);
      if (useCache) cache.put({ hash, grant }, epoch);
      return grant;
    }
    const cached = useCache ? cache.byId(lookup.id) : null;
    if (cached !== null) return cached;
    const epoch = cache.epoch();
    const grant = await q.findGrantById(sql, lookup.id);
    if (useCache && grant) cache.put({ grant }, epoch);
    return grant;
  }

  function admit(grant: q.KeyGrantRow | undefined, via: "api-key" | "jwt"): AccountCaller {
    if (!grant) throw new AuthenticationError("the API key is not valid");
    if (grant.revokedAt !== null) throw new AuthenticationError("the API key has been revoked");
    if (grant.expiresAt !== null && grant.expiresAt.getTime() <= Date.now())
      throw new AuthenticationError("the API key has expired");
    if (grant.accountDisabledAt !== null) throw new AuthenticationError("the account is disabled");
    lastUsed.set(grant.id, Date.now());
    return { kind: "account", accountId: grant.accountId, role: grant.role, keyId: grant.id, via };
  }

  async function createKeyRow(
    tx: q.Queryable,
    accountId: string,
    opts: { name?: string | undefined; expiresAt?: Date | null | undefined },
  ): Promise<{ row: q.ApiKeyRow; secret: string }> {
    const secret = generateApiKey();
    const row = await q.insertApiKey(tx, {
      id: randomId("key_"),
      accountId,
      hash: hashApiKey(serverKeys().hash, secret),
      prefix: apiKeyDisplayPrefix(secret),
      name: opts.name ?? "",
      expiresAt: opts.expiresAt ?? null,
    });
    return { row, secret };
  }

  /** A key for the account, with its audit event: the secret is in the answer, and only there. */
  async function addKey(
    tx: q.Queryable,
    actor: Actor,
    accountId: string,
    opts: { name?: string | undefined; expiresAt?: Date | null | undefined },
  ): Promise<{ key: KeyView; secret: string }> {
    const { row, secret } = await createKeyRow(tx, accountId, opts);
    await audit(tx, actor, {
      action: "key.create",
      targetType: "key",
      targetId: row.id,
      details: { accountId, prefix: row.prefix, expiresAt: iso(row.expiresAt) },
    });
    return { key: keyView(row), secret };
  }

  /** An account, with its audit event. */
  async function addAccount(
    tx: q.Queryable,
    actor: Actor,
    input: { role: Role; name: string; email?: string | undefined },
    details: Record<string, unknown> = {},
  ): Promise<AccountView> {
    const id = randomId("acc_");
    const email = input.email === undefined ? undefined : sealedEmail(id, input.email);
    const row = await q.insertAccount(tx, {
      id,
      role: input.role,
      name: input.name,
      emailSealed: email?.sealed ?? null,
      emailIndex: email?.index ?? null,
    });
    await audit(tx, actor, {
      action: "account.create",
      targetType: "account",
      targetId: id,
      details: { role: input.role, name: input.name, email: input.email !== undefined, ...details },
    });
    return accountView(row);
  }

  const audit = (
    tx: q.Queryable,
    actor: Actor,
    e: Omit<q.AuditEventInput, "actorAccountId" | "actorKeyId" | "requestId">,
  ) =>
    q.insertAuditEvent(tx, {
      ...e,
      actorAccountId: actor.accountId,
      actorKeyId: actor.keyId,
      requestId: actor.requestId,
    });

  function accountView(row: q.AccountRow): AccountView {
    return {
      id: row.id,
      role: row.role,
      name: row.name,
      email: row.emailSealed === null ? null : openEmail(serverKeys().email, row.id, row.emailSealed),
      disabled: row.disabledAt !== null,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
    };
  }

  function sealedEmail(accountId: string, email: string) {
    const k = serverKeys().email;
    return { sealed: sealEmail(k, accountId, email), index: emailIndex(k, email) };
  }

  const emailTaken = () => new AppError("CONFLICT", "an account with this e-mail address exists already");

  async function existingAccount(tx: q.Queryable, id: string): Promise<q.AccountRow> {
    const account = await q.findAccount(tx, id);
    if (!account) throw new AppError("NOT_FOUND", `no account ${id}`);
    return account;
  }

  return {
    /** The account behind an API key (`cvy_…`); AuthenticationError when it lets no one in. */
    async authenticateApiKey(key: string): Promise<AccountCaller> {
      if (!isWellFormedApiKey(key)) throw new AuthenticationError("the API key is malformed");
      return admit(await grantBy({ hash: hashApiKey(serverKeys().hash, key) }), "api-key");
    },

    /** The account behind an access token, whose key must still be good (revoking it revokes its tokens). */
    async authenticateToken(token: string): Promise<AccountCaller> {
      let claims: TokenClaims;
      try {
        claims = await verifiedClaims(token);
      } catch (err) {
        if (err instanceof TokenError) throw new AuthenticationError(err.message);
        throw err;
      }
      const caller = admit(await grantBy({ id: claims.keyId }), "jwt");
      if (caller.accountId !== claims.accountId)
        throw new AuthenticationError("the token's claims are not ours");
      return caller;
    },

    /**
     * Counts one request against the caller's tenant (per role; all anonymous callers share one
     * count). Past the limit: AppError RATE_LIMITED with Retry-After.
     */
    limitRequest(caller: Caller): Promise<RateLimitState & { windowSeconds: number }> {
      const limit = requestLimits[caller.kind === "account" ? caller.role : ANONYMOUS_TENANT];
      return limit
        .consume(tenantOf(caller))
        .then((state) => ({ ...state, windowSeconds: limit.windowSeconds }));
    },

    /** The caller's request window: what RateLimit-Policy reports. */
    requestPolicy(caller: Caller): { limit: number; windowSeconds: number } {
      const limit = requestLimits[caller.kind === "account" ? caller.role : ANONYMOUS_TENANT];
      return { limit: limit.points, windowSeconds: limit.windowSeconds };
    },

    /** Seconds `address` must still wait after too many failed authentications, or 0. */
    blockedFor(address: string): number {
      const until = blockedAddresses.get(address);
      if (until === undefined) return 0;
      if (until <= Date.now()) {
        blockedAddresses.delete(address);
        return 0;
      }
      return Math.ceil((until - Date.now()) / 1000);
    },

    /** Counts a failed authentication from `address`; RATE_LIMITED once past the limit. */
    async recordFailedAuthentication(address: string): Promise<void> {
      try {
        await failedAuthentications.consume(address);
      } catch (err) {
        if (err instanceof AppError && err.code === "RATE_LIMITED") {
          // Bounded: an address is kept only while blocked, and at most this many at once.
          if (blockedAddresses.size >= 100_000) blockedAddresses.clear();
          blockedAddresses.set(address, Date.now() + (err.retryAfter ?? 60) * 1000);
        }
        throw err;
      }
    },

    /** An access token for a caller who presented an API key. */
    async issueToken(caller: AccountCaller): Promise<IssuedToken> {
      return issueToken(
        await serverKeys().tokens,
        { accountId: caller.accountId, role: caller.role, keyId: caller.keyId },
        config.JWT_TTL_SECONDS,
      );
    },

    // ---- Accounts -----------------------------------------------------------------------------

    /**
     * A new account, and its first API key when `withKey` (the secret is in the answer only).
     * `alongside` writes what another domain keeps of the account in the same transaction (a
     * usage client's row): both commit, or neither.
     */
    async createAccount(
      actor: Actor,
      input: {
        role: Role;
        name: string;
        email?: string | undefined;
        withKey?: { name?: string; expiresAt?: Date | null };
        alongside?: (tx: q.Queryable, account: AccountView) => Promise<void>;
      },
    ): Promise<{ account: AccountView; key?: KeyView; secret?: string }> {
      try {
        return await sql.begin(async (tx) => {
          const account = await addAccount(tx, actor, input);
          await input.alongside?.(tx, account);
          if (!input.withKey) return { account };
          return { account, ...(await addKey(tx, actor, account.id, input.withKey)) };
        });
      } catch (err) {
        if (isEmailTaken(err)) throw emailTaken();
        throw err;
      }
    },

    /**
     * The first admin account and its key, when no admin account stands yet (npm start's first
     * run); undefined when there is one. Two starts at once make one admin between them.
     */
    async bootstrapAdmin(
      actor: Actor,
    ): Promise<{ account: AccountView; key: KeyView; secret: string } | undefined> {
      return sql.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(hashtext('conveyor:identity:bootstrap-admin'))`;
        if (await q.hasActiveAdmin(tx)) return undefined;
        const account = await addAccount(tx, actor, { role: "admin", name: "admin" }, { bootstrap: true });
        return { account, ...(await addKey(tx, actor, account.id, { name: "bootstrap" })) };
      });
    },

    async getAccount(id: string): Promise<AccountView | undefined> {
      const row = await q.findAccount(sql, id);
      return row && accountView(row);
    },

    async findAccountByEmail(email: string): Promise<AccountView | undefined> {
      const row = await q.findAccountByEmailIndex(sql, emailIndex(serverKeys().email, email));
      return row && accountView(row);
    },

    async listAccounts(query: { role?: Role | undefined; after?: string | undefined; limit: number }) {
      const rows = await q.listAccounts(sql, { ...query, limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      return {
        items: page.map(accountView),
        nextAfter: rows.length > query.limit ? (page.at(-1)?.id ?? null) : null,
      };
    },

    /** Renames, changes the address, or disables (every key stops at once) or re-enables an account. */
    async updateAccount(
      actor: Actor,
      id: string,
      change: {
        name?: string | undefined;
        email?: string | null | undefined;
        disabled?: boolean | undefined;
      },
    ): Promise<AccountView> {
      let row: q.AccountRow | undefined;
      try {
        row = await sql.begin(async (tx) => {
          const updated = await q.updateAccount(tx, id, {
            name: change.name,
            email:
              change.email === undefined
                ? undefined
                : change.email === null
                  ? null
                  : sealedEmail(id, change.email),
            disabled: change.disabled,
          });
          if (!updated) return undefined;
          await audit(tx, actor, {
            action:
              change.disabled === true
                ? "account.disable"
                : change.disabled === false
                  ? "account.enable"
                  : "account.update",
            targetType: "account",
            targetId: id,
            details: {
              ...(change.name === undefined ? {} : { name: change.name }),
              ...(change.email === undefined ? {} : { email: change.email === null ? "removed" : "changed" }),
              ...(change.disabled === undefined ? {} : { disabled: change.disabled }),
            },
          });
          return updated;
        });
      } catch (err) {
        if (isEmailTaken(err)) throw emailTaken();
        throw err;
      }
      if (!row) throw new AppError("NOT_FOUND", `no account ${id}`);
      if (change.disabled !== undefined) await publishEviction({ account: id });
      return accountView(row);
    },

    // ---- Keys ---------------------------------------------------------------------------------

    async createKey(
      actor: Actor,
      input: { accountId: string; name?: string | undefined; expiresAt?: Date | null | undefined },
    ): Promise<{ key: KeyView; secret: string }> {
      return sql.begin(async (tx) => {
        await existingAccount(tx, input.accountId);
        return addKey(tx, actor, input.accountId, input);
      });
    },

    async getKey(id: string): Promise<KeyView | undefined> {
      const row = await q.findApiKey(sql, id);
      return row && keyView(row);
    },

    async listKeys(query: {
      prefix?: string | undefined;
      accountId?: string | undefined;
      after?: string | undefined;
      limit: number;
    }) {
      const rows = await q.listApiKeys(sql, { ...query, limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      return {
        items: page.map(keyView),
        nextAfter: rows.length > query.limit ? (page.at(-1)?.id ?? null) : null,
      };
    },

    /**
     * A new key for the same account; the old one keeps working for `graceSeconds` (default
     * API_KEY_ROTATION_GRACE_SECONDS, 0: it stops now), then expires. A revoked key cannot rotate.
     */
    async rotateKey(actor: Actor, id: string, graceSeconds = config.API_KEY_ROTATION_GRACE_SECONDS) {
      const result = await sql.begin(async (tx) => {
        const old = await q.findApiKey(tx, id);
        if (!old) throw new AppError("NOT_FOUND", `no key ${id}`);
        if (keyState(old) !== "active")
          throw new AppError("CONFLICT", `key ${id} is ${keyState(old)}; create a new key instead`);
        const { row, secret } = await createKeyRow(tx, old.accountId, {
          name: old.name,
          expiresAt: old.expiresAt,
        });
        const retired = await q.retireApiKey(tx, id, row.id, new Date(Date.now() + graceSeconds * 1000));
        await audit(tx, actor, {
          action: "key.rotate",
          targetType: "key",
          targetId: id,
          details: {
            replacedBy: row.id,
            prefix: row.prefix,
            oldKeyExpiresAt: iso(retired?.expiresAt ?? null),
          },
        });
        return { key: keyView(row), secret, previous: keyView(retired as q.ApiKeyRow) };
      });
      await publishEviction({ key: id });
      return result;
    },

    async revokeKey(actor: Actor, id: string): Promise<KeyView> {
      const row = await sql.begin(async (tx) => {
        const revoked = await q.revokeApiKey(tx, id);
        if (!revoked) throw new AppError("NOT_FOUND", `no key ${id}`);
        await notifications?.notify(tx, {
          account: revoked.accountId,
          type: "key.revoked",
          data: { keyId: id, prefix: revoked.prefix },
        });
        await audit(tx, actor, {
          action: "key.revoke",
          targetType: "key",
          targetId: id,
          details: { accountId: revoked.accountId, prefix: revoked.prefix },
        });
        return revoked;
      });
      await publishEviction({ key: id });
      return keyView(row);
    },

    async listAuditEvents(query: {
      before?: number | undefined;
      targetId?: string | undefined;
      action?: string | undefined;
      limit: number;
    }) {
      const rows = await q.listAuditEvents(sql, { ...query, limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      const items: AuditEventView[] = page.map((r) => ({
        id: Number(r.id),
        at: r.at.toISOString(),
        actor: { accountId: r.actorAccountId, keyId: r.actorKeyId },
        action: r.action,
        target: { type: r.targetType, id: r.targetId },
        details: r.details,
        requestId: r.requestId,
      }));
      return { items, nextBefore: rows.length > query.limit ? (items.at(-1)?.id ?? null) : null };
    },

    /**
     * Tells the owners of active keys that expire within KEY_EXPIRY_NOTICE_SECONDS, once per key
     * (`key.expiring`, in the transaction that marks them told); answers how many (the hourly
     * `identity.notifyExpiringKeys` job).
     */
    async notifyExpiringKeys(log: Logger): Promise<number> {
      if (!notifications) return 0;
      let told = 0;
      for (;;) {
        const batch = await sql.begin(async (tx) => {
          const keys = await q.claimExpiringKeys(tx, KEY_EXPIRY_NOTICE_SECONDS, 500);
          for (const k of keys)
            await notifications.notify(tx, {
              account: k.accountId,
              type: "key.expiring",
              data: { keyId: k.id, prefix: k.prefix, expiresAt: k.expiresAt.toISOString() },
            });
          return keys.length;
        });
        told += batch;
        if (batch < 500) break;
      }
      if (told > 0) log.info({ told }, "owners of keys that expire soon were notified");
      return told;
    },

    /** Writes what is pending of last_used_at now (tests, shutdown). */
    flushLastUsed,

    async close(): Promise<void> {
      clearInterval(flushTimer);
      await flushLastUsed();
      if (subscriber) await subscriber.quit().catch(() => subscriber?.disconnect());
      cache.clear();
      verifiedTokens.clear();
    },
  };
}
