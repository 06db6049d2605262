// Accounts for tests that run the API in another process: the identity service over the test's
// own database and Redis, as the keys command would make them.
import { z } from "zod";
import { createDatabase } from "../../db/client.js";
import type { Role } from "../../domains/identity/caller.js";
import { identityConfig } from "../../domains/identity/config.js";
import {
  COMMAND_LINE_ACTOR,
  createIdentityService,
  type IdentityService,
} from "../../domains/identity/service.js";
import { parseConfig } from "../../lib/config.js";
import { createLogger } from "../../lib/logger.js";
import { createRedis } from "../../lib/redis.js";
import type { TestAccount } from "./context.js";
import { TEST_IDENTITY_ENV } from "./context.js";

export interface TestIdentity {
  identity: IdentityService;
  account(role: Role): Promise<TestAccount>;
  close(): Promise<void>;
}

/** The identity service of the processes started with TEST_IDENTITY_ENV on this database and prefix. */
export function openTestIdentity(opts: {
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
}): TestIdentity {
  const logger = createLogger({ level: "silent" });
  const database = createDatabase(opts.databaseUrl, { max: 2 });
  const redis = createRedis(opts.redisUrl, "producer", logger);
  const config = parseConfig(z.object(identityConfig), TEST_IDENTITY_ENV);
  const identity = createIdentityService(
    { ...config, QUEUE_PREFIX: opts.prefix, REDIS_URL: opts.redisUrl },
    { database, redis, logger },
  );
  return {
    identity,
    async account(role) {
      const made = await identity.createAccount(COMMAND_LINE_ACTOR, {
        role,
        name: `test ${role}`,
        withKey: { name: "test" },
      });
      const secret = made.secret as string;
      return {
        account: made.account,
        keyId: made.key?.id as string,
        secret,
        headers: { "X-API-Key": secret },
      };
    },
    async close() {
      await identity.close();
      await redis.quit().catch(() => redis.disconnect());
      await database.close();
    },
  };
}
