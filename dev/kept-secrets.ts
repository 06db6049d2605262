// What `npm start` keeps per install in its data dir (DEV_DATA_DIR), so a restart reads what the
// last run wrote: the scrypt salt of secrets (stored records still open, and no public salt), the
// seal key (stores still queued at a stop open after it), and the identity keys (API keys stay
// valid, e-mail addresses open, tokens verify). One JSON file, its owner's only.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { identityConfig } from "../domains/identity/config.js";
import { secretsConfig } from "../domains/secrets/config.js";
import { generateKey } from "../lib/sealing.js";
import { DevStartError } from "./processes.js";

export const KEPT_SECRETS_FILE = "dev-secrets.json";

// The identity keys are optional in the file: an install made before identity gets them added.
const keptSecretsSchema = z.object({
  SECRETS_KDF_SALT: secretsConfig.SECRETS_KDF_SALT.unwrap(),
  JOB_SEAL_KEY: secretsConfig.JOB_SEAL_KEY.unwrap(),
  API_KEY_HASH_KEY: identityConfig.API_KEY_HASH_KEY,
  ACCOUNT_DATA_KEY: identityConfig.ACCOUNT_DATA_KEY,
  JWT_SIGNING_KEY: identityConfig.JWT_SIGNING_KEY,
});
export type KeptSecrets = Required<z.infer<typeof keptSecretsSchema>>;

const ADDED_LATER = ["API_KEY_HASH_KEY", "ACCOUNT_DATA_KEY", "JWT_SIGNING_KEY"] as const;

/** The install's salt and keys, made on its first start (file mode 0600); `created`: any new. */
export async function keptSecrets(
  dataDir: string,
): Promise<{ secrets: KeptSecrets; file: string; created: boolean }> {
  const file = join(dataDir, KEPT_SECRETS_FILE);
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (text !== undefined) {
    const found = parseKept(text, file);
    const missing = ADDED_LATER.filter((name) => found[name] === undefined);
    if (missing.length === 0) return { secrets: found as KeptSecrets, file, created: false };
    const secrets = { ...found } as KeptSecrets;
    for (const name of missing) secrets[name] = generateKey();
    // Written aside and renamed over: a crash leaves the old file or the new one, never half.
    const aside = `${file}.${process.pid}.tmp`;
    await writeFile(aside, serialise(secrets), { mode: 0o600 });
    await rename(aside, file);
    return { secrets, file, created: true };
  }
  const secrets: KeptSecrets = {
    SECRETS_KDF_SALT: randomBytes(24).toString("base64url"),
    JOB_SEAL_KEY: generateKey(),
    API_KEY_HASH_KEY: generateKey(),
    ACCOUNT_DATA_KEY: generateKey(),
    JWT_SIGNING_KEY: generateKey(),
  };
  await mkdir(dataDir, { recursive: true });
  try {
    // "wx": of two first starts at once, one makes the file and both use it.
    await writeFile(file, serialise(secrets), { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return keptSecrets(dataDir);
    throw err;
  }
  return { secrets, file, created: true };
}

const serialise = (secrets: KeptSecrets) => `${JSON.stringify(secrets, null, 2)}\n`;

function parseKept(text: string, file: string): z.infer<typeof keptSecretsSchema> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {}
  const result = keptSecretsSchema.safeParse(parsed);
  if (result.success) return result.data;
  throw new DevStartError(
    `${file} does not hold a SECRETS_KDF_SALT and a JOB_SEAL_KEY (and valid keys besides). Fix it, or ` +
      "delete it to make new ones (secrets stored under the old salt and API keys made under the old " +
      "keys then no longer open).",
  );
}
