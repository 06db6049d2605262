// The Usage tab's HTML: the top clients, and each client's week as an inline SVG bar chart drawn
// on the server. Every value goes through hono/html's `html` tag (client ids are chosen by the
// clients); the bars are sized by attributes, not inline styles, so the page's CSP holds.
import { html, raw } from "hono/html";
import type { TopClient } from "../domains/usage/service.js";
import { formatCount, formatDuration } from "./format.js";
import { PAGE_CSS } from "./operator-page.assets.js";
import { type Html, type PageLinks, topbar } from "./operator-page.view.js";
import { USAGE_CSS, USAGE_SCRIPT } from "./usage-page.assets.js";

export interface ClientWeek {
  clientId: string;
  /** Oldest first; the last is today (UTC). */
  days: { date: string; requests: number }[];
  total: number;
}

export interface UsageData {
  /** Undefined when neither Redis nor Postgres answered. */
  top: { clients: TopClient[]; fromRollup: boolean } | undefined;
  /** Undefined when Postgres did not answer and no earlier answer was kept. */
  chart:
    | {
        clients: ClientWeek[];
        /** Every client, of which `clients` are the busiest. */
        clientCount: number;
        dates: string[];
        /** Every client's requests today, and in the 7 days. */
        today: number;
        week: number;
        /** Set when Postgres is down and this is the last answer computed, this old. */
        ageSeconds: number | undefined;
      }
    | undefined;
  /** Redis answers, so live events can come. */
  live: boolean;
}

// The chart's geometry, in SVG units; the script reads BASE and SPAN from data attributes.
const SLOT = 34;
const BAR = 24;
const BASE = 50;
const SPAN = 44;
const HEIGHT = 54;
const WIDTH = SLOT * 7;
/** A day with requests shows at least this tall, however small next to the busiest. */
const MIN_BAR = 1.5;

const barHeight = (n: number, max: number) =>
  n === 0 ? 0 : Math.max(MIN_BAR, (n / Math.max(1, max)) * SPAN);
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const weekday = (date: string) => WEEKDAYS[new Date(`${date}T00:00:00Z`).getUTCDay()] ?? "";
const requestsLabel = (date: string, n: number) =>
  `${date}: ${formatCount(n)} ${n === 1 ? "request" : "requests"}`;

function weekChart(c: ClientWeek): Html {
  const max = Math.max(...c.days.map((d) => d.requests));
  const last = c.days.length - 1;
  const bars = c.days.map((d, i) => {
    const h = barHeight(d.requests, max);
    return html`<rect class="${i === last ? "today" : "day"}" data-date="${d.date}" data-requests="${d.requests}"
      x="${i * SLOT + (SLOT - BAR) / 2}" y="${(BASE - h).toFixed(2)}" width="${BAR}" height="${h.toFixed(2)}"
      rx="2"><title>${requestsLabel(d.date, d.requests)}</title></rect>`;
  });
  const label = `${c.clientId}, requests per day: ${c.days.map((d) => `${d.date} ${d.requests}`).join(", ")}`;
  return html`<svg class="week" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img"
    aria-label="${label}" data-base="${BASE}" data-span="${SPAN}" data-min="${MIN_BAR}">
    <line class="axis" x1="0" x2="${WIDTH}" y1="${BASE + 0.5}" y2="${BASE + 0.5}"></line>${bars}</svg>`;
}

/** The day labels over the charts' column, on the charts' grid. */
function dayAxis(dates: string[]): Html {
  const last = dates.length - 1;
  const labels = dates.map(
    (
      d,
      i,
    ) => html`<text class="${i === last ? "today" : ""}" x="${i * SLOT + SLOT / 2}" y="10">${i === last ? "Today" : weekday(d)}</text>
      <text class="date" x="${i * SLOT + SLOT / 2}" y="22">${d.slice(5)}</text>`,
  );
  return html`<svg class="days" viewBox="0 0 ${WIDTH} 26" width="${WIDTH}" height="26" aria-hidden="true">${labels}</svg>`;
}

function chartCard(chart: UsageData["chart"]): Html {
  if (!chart)
    return html`<div class="empty" data-unavailable="chart">The 7-day chart is unavailable: Postgres is not answering. It will appear as soon as it does.</div>`;
  const stale =
    chart.ageSeconds === undefined
      ? ""
      : html`<div class="note" data-stale="chart">Postgres is not answering: these figures are the last read, ${formatDuration(chart.ageSeconds * 1000)} ago. Live updates still add to them.</div>`;
  if (chart.clients.length === 0) return html`${stale}<div class="empty">No usage clients yet.</div>`;
  const rows = chart.clients.map((c) => {
    const today = c.days.at(-1)?.requests ?? 0;
    return html`<tr data-client="${c.clientId}">
      <td class="wrap-cell mono client">${c.clientId}</td>
      <td class="chart">${weekChart(c)}</td>
      <td class="num" data-col="today" data-n="${today}">${formatCount(today)}</td>
      <td class="num" data-col="week" data-n="${c.total}">${formatCount(c.total)}</td>
    </tr>`;
  });
  return html`${stale}<div class="table-wrap"><table id="usage-chart" data-dates="${chart.dates.join(" ")}">
    <thead><tr><th>Client</th><th class="chart">${dayAxis(chart.dates)}</th><th class="num">Today</th><th class="num">7 days</th></tr></thead>
    <tbody>${rows}</tbody>
  </table></div>`;
}

function topCard(top: UsageData["top"]): Html {
  if (!top)
    return html`<div class="empty" data-unavailable="top">The top clients are unavailable: neither Redis nor Postgres is answering.</div>`;
  const note = top.fromRollup
    ? html`<div class="note" data-stale="top">Redis is not answering: counted from the hourly rollup in Postgres.</div>`
    : "";
  if (top.clients.length === 0)
    return html`${note}<div class="empty">No requests in the last 24 hours.</div>`;
  const max = top.clients[0]?.requests ?? 1;
  const items = top.clients.map(
    (t) => html`<li data-client="${t.clientId}" data-n="${t.requests}">
      <span class="mono client">${t.clientId}</span><b data-col="requests">${formatCount(t.requests)}</b>
      <svg class="share" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true"><rect height="6" width="${((t.requests / Math.max(1, max)) * 100).toFixed(2)}"></rect></svg>
    </li>`,
  );
  return html`${note}<ol id="top-clients">${items}</ol>`;
}

function kpi(label: string, stat: string, value: number | undefined, sub: string): Html {
  return html`<div class="card kpi timing">
    <div class="kpi-label">${label}</div>
    <div class="kpi-value" data-usage="${stat}" data-n="${value ?? 0}">${value === undefined ? "—" : formatCount(value)}</div>
    <div class="kpi-sub">${sub}</div>
  </div>`;
}

/** The part of the page read again: served alone at <page>/live. */
export function usageSection(data: UsageData): Html {
  const { chart } = data;
  const busiest =
    chart && chart.clientCount > chart.clients.length
      ? `the ${chart.clients.length} busiest of ${formatCount(chart.clientCount)} clients by 7-day total`
      : "every client, busiest first";
  return html`<section class="kpis usage-kpis">
      ${kpi("Requests today", "today", chart?.today, "every client, UTC day so far")}
      ${kpi("Requests · 7 days", "week", chart?.week, "every client, today included")}
      ${kpi("Clients", "clients", chart?.clientCount, "registered usage clients")}
    </section>
    <div class="usage-grid">
      <section class="card">
        <div class="card-head"><h2>Top clients</h2><span class="hint">last 24 hours</span></div>
        ${topCard(data.top)}
      </section>
      <section class="card">
        <div class="card-head"><h2>Requests per day</h2><span class="hint">last 7 days (UTC) · ${busiest} · each on its own scale</span></div>
        ${chartCard(chart)}
      </section>
    </div>`;
}

export interface UsagePageModel {
  nonce: string;
  links: Pick<PageLinks, "page" | "usage" | "bullBoard">;
  data: UsageData;
  src: { fragment: string; stream: string };
}

export function usagePage(m: UsagePageModel): Html {
  const live = m.data.live;
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <link rel="icon" href="data:,">
  <title>Usage · Conveyor operations</title>
  <style nonce="${m.nonce}">${raw(PAGE_CSS)}${raw(USAGE_CSS)}</style>
</head>
<body>
  ${topbar(m.links, "usage", live ? "stale" : "off", live ? "Connecting" : "Live updates unavailable: Redis is not answering")}
  <main class="wrap">
    ${m.data.chart ? "" : html`<div class="notice" role="alert">Postgres is not answering; the chart will appear as soon as it does.</div>`}
    <div id="usage" data-src="${m.src.fragment}" data-stream="${m.src.stream}">${usageSection(m.data)}</div>
    <noscript><p class="muted small">Without JavaScript this page does not update itself: reload it.</p></noscript>
  </main>
  <script nonce="${m.nonce}">${raw(USAGE_SCRIPT)}</script>
</body>
</html>`;
}
