// Who is calling: an account (by one of its API keys, or a JWT exchanged for one), or nobody in
// particular (an anonymous caller on a route that lets them in). The tenant is whose data a
// request reads and writes: the account's id, or one shared anonymous tenant.
import { ACCOUNT_ROLES, type AccountRole } from "../../db/schema/identity.js";

export const ROLES = ACCOUNT_ROLES;
export type Role = AccountRole;

/** The tenant of every anonymous caller (ANONYMOUS_ACCESS): one shared namespace, limits of its own. */
export const ANONYMOUS_TENANT = "anonymous";

export type Caller =
  | {
      kind: "account";
      accountId: string;
      role: Role;
      /** The API key presented, or the one the JWT was exchanged for. */
      keyId: string;
      via: "api-key" | "jwt";
    }
  | { kind: "anonymous" };

export const ANONYMOUS: Caller = { kind: "anonymous" };

export const tenantOf = (caller: Caller): string =>
  caller.kind === "account" ? caller.accountId : ANONYMOUS_TENANT;

/** Ops and admins see every tenant's jobs and the operator surfaces. */
export const isOperator = (caller: Caller): boolean =>
  caller.kind === "account" && (caller.role === "admin" || caller.role === "ops");
