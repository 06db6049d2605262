// `npm run keys -- <command>`: accounts and API keys from a shell, for what the API cannot do
// itself: the first admin key of a production install (no admin exists to ask the API), and a
// way back in when every admin key is lost. Talks to Postgres and Redis with the API's own
// identity keys; every change is in the audit log, by the command line (actor null).
//
//   create --role admin|ops|quant|client [--name N] [--email E] [--expires-at ISO]
//   list [--prefix cvy_xxxx] [--account acc_…]
//   rotate <key id> [--grace-seconds N]
//   revoke <key id>
//
// Prints JSON on stdout; a new key's secret is in it, once.
import { parseArgs } from "node:util";
import { z } from "zod";
import { createDatabase } from "../../db/client.js";
import { commonConfig, exitOnConfigIssues, loadConfig } from "../../lib/config.js";
import { createLogger } from "../../lib/logger.js";
import { createRedis } from "../../lib/redis.js";
import { ROLES, type Role } from "./caller.js";
import { identityConfig, identityConfigIssues } from "./config.js";
import { COMMAND_LINE_ACTOR, createIdentityService } from "./service.js";

const USAGE = `usage: npm run keys -- <command>
  create --role ${ROLES.join("|")} [--name NAME] [--email ADDRESS] [--expires-at ISO-8601]
         a new account and its first API key (the key is printed once)
  list [--prefix cvy_xxxx] [--account ACCOUNT_ID]
  rotate KEY_ID [--grace-seconds N]   a new key; the old one works N more seconds
  revoke KEY_ID
Reads DATABASE_URL, REDIS_URL, API_KEY_HASH_KEY, ACCOUNT_DATA_KEY and JWT_SIGNING_KEY, as the API does.`;

// sysexits EX_USAGE.
const EXIT_USAGE = 64;

function usage(problem: string): never {
  process.stderr.write(`${problem}\n\n${USAGE}\n`);
  process.exit(EXIT_USAGE);
}

const { positionals, values } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        role: { type: "string" },
        name: { type: "string" },
        email: { type: "string" },
        "expires-at": { type: "string" },
        prefix: { type: "string" },
        account: { type: "string" },
        "grace-seconds": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
})();
const [command, target] = positionals;
if (values.help || command === undefined) usage("");

const config = loadConfig(
  z.object({
    ...commonConfig,
    ...identityConfig,
    // Only warnings and errors on stdout beside the JSON answer.
    LOG_LEVEL: commonConfig.LOG_LEVEL.removeDefault().default("warn"),
  }),
);
exitOnConfigIssues(identityConfigIssues(config));
const logger = createLogger({ level: config.LOG_LEVEL, name: "keys" });
const database = createDatabase(config.DATABASE_URL, { max: 2, appName: "conveyor-keys" });
const redis = createRedis(config.REDIS_URL, "producer", logger);
const identity = createIdentityService(config, { database, redis, logger });

function expiresAt(): Date | null {
  const raw = values["expires-at"];
  if (raw === undefined) return null;
  const at = new Date(raw);
  if (Number.isNaN(at.getTime())) usage(`--expires-at ${raw} is not an ISO 8601 date`);
  return at;
}

async function run(): Promise<unknown> {
  switch (command) {
    case "create": {
      const role = values.role;
      if (!(ROLES as readonly string[]).includes(role ?? ""))
        usage(`--role is required: one of ${ROLES.join(", ")}`);
      return identity.createAccount(COMMAND_LINE_ACTOR, {
        role: role as Role,
        name: values.name ?? role ?? "",
        email: values.email,
        withKey: { name: "created by npm run keys", expiresAt: expiresAt() },
      });
    }
    case "list":
      return identity.listKeys({ prefix: values.prefix, accountId: values.account, limit: 200 });
    case "rotate": {
      if (target === undefined) usage("rotate needs the id of the key (key_…)");
      const grace = values["grace-seconds"];
      if (grace !== undefined && !/^\d+$/.test(grace)) usage("--grace-seconds must be a whole number");
      return identity.rotateKey(COMMAND_LINE_ACTOR, target, grace === undefined ? undefined : Number(grace));
    }
    case "revoke":
      if (target === undefined) usage("revoke needs the id of the key (key_…)");
      return identity.revokeKey(COMMAND_LINE_ACTOR, target);
    default:
      return usage(`unknown command ${command}`);
  }
}

let exitCode = 0;
try {
  process.stdout.write(`${JSON.stringify(await run(), null, 2)}\n`);
} catch (err) {
  process.stderr.write(`keys ${command}: ${(err as Error).message}\n`);
  exitCode = 1;
} finally {
  await identity.close();
  await database.close();
  await redis.quit().catch(() => redis.disconnect());
  logger.flush();
}
process.exit(exitCode);
