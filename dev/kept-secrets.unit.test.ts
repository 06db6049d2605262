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
    expect(decodeKey(first.secrets.JOB_SEAL_KEY)).toHaveLength(32);
    expect(JSON.parse(await readFile(first.file, "utf8"))).toEqual(first.secrets);

    const again = await keptSecrets(dataDir);
    expect(again).toEqual({ ...first, created: false });
    expect((await keptSecrets(await tempDir())).secrets.SECRETS_KDF_SALT).not.toBe(
      first.secrets.SECRETS_KDF_SALT,
    );
  });

  it("refuses a file it cannot read, rather than replace the salt records need", async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, KEPT_SECRETS_FILE), '{"SECRETS_KDF_SALT":"short"}');
    await expect(keptSecrets(dataDir)).rejects.toThrow(DevStartError);
    await expect(keptSecrets(dataDir)).rejects.toThrow(/delete it to make new ones/);
  });
});
