import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { decodeKey } from "../lib/sealing.js";
import { KEPT_SECRETS_FILE, keptSecrets } from "./kept-secrets.js";
import { DevStartError } from "./processes.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "conveyor-kept-"));
  dirs.push(dir);
  return dir;
}

describe("keptSecrets (npm start's salt and seal key)", () => {
  it("makes them once per data dir, readable by its owner only, and gives them back after", async () => {
    // A data dir that does not exist yet, as on a first start.
    const dataDir = join(await tempDir(), ".data");
    const first = await keptSecrets(dataDir);
    expect(first.created).toBe(true);
    expect(first.file).toBe(join(dataDir, KEPT_SECRETS_FILE));
    expect((await stat(first.file)).mode & 0o777).toBe(0o600);
    expect(first.secrets.SECRETS_KDF_SALT.length).toBeGreaterThanOrEqual(16);
    for (const key of ["JOB_SEAL_KEY", "API_KEY_HASH_KEY", "ACCOUNT_DATA_KEY", "JWT_SIGNING_KEY"] as const)
      expect(decodeKey(first.secrets[key])).toHaveLength(32);
    expect(JSON.parse(await readFile(first.file, "utf8"))).toEqual(first.secrets);

    const again = await keptSecrets(dataDir);
    expect(again).toEqual({ ...first, created: false });
    expect((await keptSecrets(await tempDir())).secrets.SECRETS_KDF_SALT).not.toBe(
      first.secrets.SECRETS_KDF_SALT,
    );
  });

  it("adds the identity keys to an install made before them, keeping its salt and seal key", async () => {
    const dataDir = await tempDir();
    const older = {
      SECRETS_KDF_SALT: "an-older-install-salt-0123",
      JOB_SEAL_KEY: Buffer.alloc(32, 7).toString("base64"),
    };
    await writeFile(join(dataDir, KEPT_SECRETS_FILE), JSON.stringify(older), { mode: 0o600 });
    const upgraded = await keptSecrets(dataDir);
    expect(upgraded.created).toBe(true);
    expect(upgraded.secrets).toMatchObject(older);
    expect(decodeKey(upgraded.secrets.API_KEY_HASH_KEY)).toHaveLength(32);
    expect(JSON.parse(await readFile(upgraded.file, "utf8"))).toEqual(upgraded.secrets);
    expect((await stat(upgraded.file)).mode & 0o777).toBe(0o600);
    expect(await keptSecrets(dataDir)).toEqual({ ...upgraded, created: false });
  });

  it("refuses a file it cannot read, rather than replace the salt records need", async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, KEPT_SECRETS_FILE), '{"SECRETS_KDF_SALT":"short"}');
    await expect(keptSecrets(dataDir)).rejects.toThrow(DevStartError);
    await expect(keptSecrets(dataDir)).rejects.toThrow(/delete it to make new ones/);
  });
});
