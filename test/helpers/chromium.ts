// The Chromium the browser tests drive (playwright-core downloads none): CHROMIUM_PATH, or the
// first of the usual install places that exists. Where there is none the browser tests skip,
// except in CI, where .ci/run installs one and a missing browser is a broken run.
import { existsSync } from "node:fs";
import { loadTestEnv } from "../../lib/config.js";

const USUAL_PLACES = [
  "/usr/bin/chromium", // Debian
  "/usr/bin/chromium-browser", // Ubuntu, Fedora
  "/usr/bin/google-chrome",
  "/usr/bin/google-chrome-stable",
  "/Applications/Chromium.app/Contents/MacOS/Chromium",
  "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
];

export interface ChromiumLookup {
  /** The executable to launch; undefined when none was found. */
  path: string | undefined;
  /** Skip the browser tests: no Chromium, and not in CI. */
  skip: boolean;
  /** Why there is none and how to get one, for the skip warning or the CI failure. */
  missing: string;
}

export function findChromium(): ChromiumLookup {
  const { CHROMIUM_PATH, CI } = loadTestEnv();
  // A path set on purpose is used as it is: a wrong one fails at launch rather than skipping.
  const path = CHROMIUM_PATH || USUAL_PLACES.find((p) => existsSync(p));
  const inCi = CI !== undefined && !["", "0", "false"].includes(CI.toLowerCase());
  return {
    path,
    skip: path === undefined && !inCi,
    missing: `no Chromium found at ${USUAL_PLACES.join(", ")}: set CHROMIUM_PATH to one (Debian: apt-get install chromium)`,
  };
}
