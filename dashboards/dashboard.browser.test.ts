// The operator page in a real browser: headless Chromium against the app on a real port, with
// the real workers ingesting events. Screenshots land in <tmpdir>/conveyor-dashboards/. Skipped,
// with a warning, where no Chromium is found (test/helpers/chromium.ts), except in CI.
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findChromium } from "../test/helpers/chromium.js";
import { createTestContext, type TestContext } from "../test/helpers/context.js";
import { type ServedApp, serveApp } from "../test/helpers/http.js";

const CHROMIUM = findChromium();
if (CHROMIUM.skip) console.warn(`dashboards/dashboard.browser.test.ts skipped: ${CHROMIUM.missing}`);
const USER = "ops";
const PASSWORD = "correct-horse-battery";
const SCREENSHOT_DIR = join(tmpdir(), "conveyor-dashboards");

let t: TestContext;
let browser: Browser;
let served: ServedApp | undefined;
let base: string;
const runId = randomUUID().slice(0, 8);

const minutes = (m: number) => new Date(Date.parse("2026-11-21T09:00:00.000Z") + m * 60_000).toISOString();

/** Posts one event through the public API; the worker merges it into Postgres. */
async function send(alert: Record<string, unknown>, wait = true) {
  const res = await fetch(`${base}/v1/alerts/events`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(wait ? { prefer: "wait=10" } : {}) },
    body: JSON.stringify({
      type: "ALERT_CHANGED",
      alert: { responder: { name: "Dana Whitfield" }, ...alert },
    }),
  });
  expect(res.status).toBe(wait ? 200 : 202);
}

const text = (page: Page, selector: string) => page.locator(selector).first().textContent();

const DAY_MS = 86_400_000;
const operatorHeaders = {
  authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`,
};

/** Registers a usage client through the public API; answers its API key. */
async function registerClient(clientId: string): Promise<string> {
  const res = await fetch(`${base}/api/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: clientId, email: `${clientId}@example.com`, client_id: clientId }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { api_key: string }).api_key;
}

/** Logs `n` hits of a client through the public API, `daysAgo` days back (at noon UTC) or now. */
async function logHits(apiKey: string, n: number, daysAgo = 0) {
  if (n === 0) return;
  const at = Math.floor(Date.now() / DAY_MS) * DAY_MS - daysAgo * DAY_MS + DAY_MS / 2;
  const res = await fetch(`${base}/api/logs`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": apiKey },
    body: JSON.stringify({
      hits: Array.from({ length: n }, (_, i) => ({
        ip: "203.0.113.7",
        endpoint: `/v2/orders/${i}`,
        ...(daysAgo === 0 ? {} : { timestamp: at }),
      })),
    }),
  });
  expect(res.status).toBe(202);
}

// When the tests below are skipped, vitest runs none of the file's hooks either.
beforeAll(async () => {
  if (!CHROMIUM.path) throw new Error(`CI runs the browser tests: ${CHROMIUM.missing}`);
  t = await createTestContext({ ADMIN_USER: USER, ADMIN_PASSWORD: PASSWORD });
  t.startWorkers({ WORKER_QUEUES: "alert-ingestion,log-batching" });
  served = await serveApp(t.app);
  base = served.url;
  // Checkout: acknowledged after 2 and 4 min, one resolved after 30 min. Search: one triggered.
  await send({
    alertId: `${runId}-1`,
    name: "Checkout latency above 2 s",
    service: { name: "Checkout" },
    status: "RESOLVED",
    triggeredOn: minutes(0),
    acknowledgedOn: minutes(2),
    resolvedOn: minutes(30),
  });
  await send({
    alertId: `${runId}-2`,
    name: "Payment provider errors",
    service: { name: "Checkout" },
    status: "ACKNOWLEDGED",
    triggeredOn: minutes(10),
    acknowledgedOn: minutes(14),
  });
  await send({
    alertId: `${runId}-3`,
    name: "Search index lagging",
    service: { name: "Search" },
    status: "TRIGGERED",
    triggeredOn: minutes(20),
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM.path,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await served?.close();
  await t?.close();
});

describe.skipIf(CHROMIUM.skip)("the operator page in a browser", () => {
  it("shows the counts and the service table, and updates by itself after an event", async () => {
    const context = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1440, height: 1000 },
    });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(err.message));
      // The page's CSP would report a blocked inline script or style here.
      page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
      const res = await page.goto(`${base}/dashboard`);
      expect(res?.status()).toBe(200);

      expect(await text(page, '[data-stat="total"]')).toBe("3");
      expect(await text(page, '[data-stat="TRIGGERED"]')).toBe("1");
      expect(await text(page, '[data-stat="ACKNOWLEDGED"]')).toBe("1");
      expect(await text(page, '[data-stat="RESOLVED"]')).toBe("1");
      expect(await text(page, '[data-stat="mtta"]')).toBe("3m 00s");
      expect(await text(page, '[data-stat="mttr"]')).toBe("30m 00s");
      const checkout = page.locator('#services tr[data-service="Checkout"]');
      expect(await checkout.locator('[data-col="total"]').textContent()).toBe("2");
      expect(await checkout.locator('[data-col="ACKNOWLEDGED"]').textContent()).toBe("1");
      expect(await checkout.locator('[data-col="RESOLVED"]').textContent()).toBe("1");
      expect(
        await page.locator('#services tr[data-service="Search"] [data-col="TRIGGERED"]').textContent(),
      ).toBe("1");
      expect(await page.locator("#alerts tbody tr").count()).toBe(3);
      // The inline stylesheet applied (the CSP lets it through by nonce).
      // (Expressions as strings: this project compiles without the DOM's types.)
      expect(await page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor")).toBe(
        "rgb(20, 27, 38)",
      );

      // A marker that a reload would wipe: the update must come from the page's own refresh.
      await page.evaluate("window.marker = 'still here'");
      await send(
        {
          alertId: `${runId}-4`,
          name: "Search 5xx rate above 1%",
          service: { name: "Search" },
          status: "ACKNOWLEDGED",
          triggeredOn: minutes(40),
          acknowledgedOn: minutes(41),
        },
        false,
      );
      await expect.poll(() => text(page, '[data-stat="total"]'), { timeout: 5_000, interval: 100 }).toBe("4");
      await expect
        .poll(() => page.locator('#services tr[data-service="Search"] [data-col="total"]').textContent(), {
          timeout: 5_000,
        })
        .toBe("2");
      expect(await page.locator(`#alerts tr[data-alert-id="${runId}-4"]`).count()).toBe(1);
      expect(await page.evaluate("window.marker")).toBe("still here");
      expect(await page.locator("#live-status").getAttribute("data-state")).toBe("live");
      expect(errors).toEqual([]);

      await page.screenshot({ path: join(SCREENSHOT_DIR, "dashboard.png"), fullPage: true });
    } finally {
      await context.close();
    }
  });

  it("shows the Usage tab's week as a bar chart, and adds hits logged through the API without a reload", async () => {
    // Three clients with a week behind them (oldest first, today last).
    const weeks: Record<string, number[]> = {
      [`shop-${runId}`]: [12, 18, 9, 22, 30, 16, 4],
      [`maps-${runId}`]: [5, 3, 8, 2, 6, 4, 2],
      [`mail-${runId}`]: [1, 0, 3, 2, 0, 1, 1],
    };
    const keys: Record<string, string> = {};
    for (const [clientId, days] of Object.entries(weeks)) {
      keys[clientId] = await registerClient(clientId);
      for (const [i, n] of days.entries()) await logHits(keys[clientId] as string, n, 6 - i);
    }
    const week = Object.values(weeks)
      .flat()
      .reduce((a, b) => a + b, 0);
    // Committed: the page's own fragment counts them all.
    await expect
      .poll(
        async () =>
          (await (await fetch(`${base}/dashboard/usage/live`, { headers: operatorHeaders })).text()).includes(
            `data-usage="week" data-n="${week}"`,
          ),
        { timeout: 15_000 },
      )
      .toBe(true);

    const context = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1440, height: 900 },
    });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(err.message));
      page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
      // From the alerts page, through the navigation.
      await page.goto(`${base}/dashboard`);
      await Promise.all([
        page.waitForURL(/\/dashboard\/usage$/),
        page.click('nav a[href="/dashboard/usage"]'),
      ]);

      const shop = page.locator(`#usage-chart tr[data-client="shop-${runId}"]`);
      expect(await shop.locator("svg.week rect").count()).toBe(7);
      const today = shop.locator("svg.week rect.today");
      expect(await today.getAttribute("data-requests")).toBe("4");
      // Drawn: the busiest day fills the chart's height, today's bar is shorter but there.
      expect(await shop.locator('svg.week rect[data-requests="30"]').getAttribute("height")).toBe("44.00");
      expect(Number(await today.getAttribute("height"))).toBeGreaterThan(0);
      expect((await today.boundingBox())?.height).toBeGreaterThan(0);
      expect(await page.locator("#top-clients li").first().getAttribute("data-client")).toBe(`shop-${runId}`);
      const number = async (selector: string) => Number((await text(page, selector))?.replace(/,/g, ""));
      const todayTotal = await number('[data-usage="today"]');
      expect(todayTotal).toBe(7);
      const topBefore = await number(`#top-clients li[data-client="shop-${runId}"] [data-col="requests"]`);

      // Live: the stream is open and the figures were read again once it was.
      await page.locator('#live-status[data-state="live"]').waitFor({ timeout: 10_000 });
      await page.locator("#usage[data-read]").waitFor({ timeout: 10_000 });
      await page.evaluate("window.marker = 'still here'");
      await logHits(keys[`shop-${runId}`] as string, 9);
      await expect
        .poll(() => today.getAttribute("data-requests"), { timeout: 5_000, interval: 100 })
        .toBe("13");
      expect(await shop.locator('[data-col="today"]').textContent()).toBe("13");
      expect(await shop.locator('[data-col="week"]').textContent()).toBe(String(111 + 9));
      expect(await number('[data-usage="today"]')).toBe(todayTotal + 9);
      expect(await number(`#top-clients li[data-client="shop-${runId}"] [data-col="requests"]`)).toBe(
        topBefore + 9,
      );
      expect(await page.locator("#live-text").textContent()).toMatch(
        /^Live · last batch \d{2}:\d{2}:\d{2} UTC$/,
      );
      expect(await page.evaluate("window.marker")).toBe("still here");
      expect(errors).toEqual([]);

      await page.screenshot({ path: join(SCREENSHOT_DIR, "usage.png"), fullPage: true });
      await page.screenshot({ path: "/tmp/usage-tab.png", fullPage: true });
    } finally {
      await context.close();
    }
  });

  it("filters through the form", async () => {
    const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
    try {
      const page = await context.newPage();
      await page.goto(`${base}/dashboard`);
      await page.fill("#f-service", "Checkout");
      await page.selectOption("#f-status", "RESOLVED");
      await Promise.all([page.waitForURL(/service=Checkout/), page.click("button[type=submit]")]);
      expect(await text(page, '[data-stat="total"]')).toBe("1");
      expect(await page.locator("#alerts tbody tr").count()).toBe(1);
      expect(await page.locator(`#alerts tr[data-alert-id="${runId}-1"]`).count()).toBe(1);
    } finally {
      await context.close();
    }
  });

  it("renders Bull Board with its script and styles", async () => {
    const context = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1440, height: 900 },
    });
    try {
      const page = await context.newPage();
      const failed: string[] = [];
      page.on("response", (r) => r.url().startsWith(base) && r.status() >= 400 && failed.push(r.url()));
      // Bull Board links a web font from the internet; waiting for "load" would wait on it.
      await page.goto(`${base}/admin/queues`, { waitUntil: "domcontentloaded" });
      // The queue list is drawn by Bull Board's React bundle, so its script ran.
      await page.getByText("alert-ingestion").first().waitFor({ timeout: 15_000 });
      await page.getByText("Loading...").waitFor({ state: "detached", timeout: 15_000 });
      expect(failed).toEqual([]);
      await page.screenshot({ path: join(SCREENSHOT_DIR, "bull-board.png") });
    } finally {
      await context.close();
    }
  });
});
