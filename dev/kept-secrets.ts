// What `npm start` keeps per install in its data dir (DEV_DATA_DIR), so a restart reads what the
// last run wrote: the scrypt salt of secrets (stored records still open, and no public salt) and
// the seal key (stores still queued at a stop open after it). One JSON file, its owner's only.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { secretsConfig } from "../domains/secrets/config.js";
import { generateKey } from "../lib/sealing.js";
import { DevStartError } from "./processes.js";

export const KEPT_SECRETS_FILE = "dev-secrets.json";

const keptSecretsSchema = z.object({
  SECRETS_KDF_SALT: secretsConfig.SECRETS_KDF_SALT.unwrap(),
  JOB_SEAL_KEY: secretsConfig.JOB_SEAL_KEY.unwrap(),
});
export type KeptSecrets = z.infer<typeof keptSecretsSchema>;

/** The install's salt and seal key, made on its first start (file mode 0600). */
export async function keptSecrets(
  dataDir: string,
): Promise<{ secrets: KeptSecrets; file: string; created: boolean }> {
  const file = join(dataDir, KEPT_SECRETS_FILE);
  const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (text !== undefined) return { secrets: parseKept(text, file), file, created: false };
  const secrets: KeptSecrets = {
    SECRETS_KDF_SALT: randomBytes(24).toString("base64url"),
    JOB_SEAL_KEY: generateKey(),
  };
  await mkdir(dataDir, { recursive: true });
  try {
    // "wx": of two first starts at once, one makes the file and both use it.
    await writeFile(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return keptSecrets(dataDir);
    throw err;
  }
  return { secrets, file, created: true };
}

function parseKept(text: string, file: string): KeptSecrets {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {}
  const result = keptSecretsSchema.safeParse(parsed);
  if (result.success) return result.data;
  throw new DevStartError(
    `${file} does not hold a SECRETS_KDF_SALT and a JOB_SEAL_KEY. Fix it, or delete it to make new ones ` +
      "(secrets stored under the old salt then no longer open).",
  );
}
