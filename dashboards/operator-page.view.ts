// The operator page's HTML. Every value goes through hono/html's `html` tag, which escapes
// strings for text and quoted attributes; only the constant CSS and script go in raw.
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { ALERT_STATUSES, type AlertStatus } from "../db/schema/alerts.js";
import type { AlertStats, AlertView, DurationStats } from "../domains/alerts/queries.js";
import { DEFAULT_PAGE_SIZE } from "./filters.js";
import { formatCount, formatDuration, formatInstant, spanMs } from "./format.js";
import { PAGE_CSS, PAGE_SCRIPT } from "./operator-page.assets.js";

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

export const STATUS_LABELS: Record<AlertStatus, string> = {
  TRIGGERED: "Triggered",
  ACKNOWLEDGED: "Acknowledged",
  RESOLVED: "Resolved",
};

export const QUEUE_STATES = ["waiting", "active", "delayed", "failed", "completed"] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

export interface QueueDepth {
  name: string;
  counts: Record<QueueState, number>;
}

export interface LiveData {
  stats: AlertStats & { groups?: (AlertStats & { key: string | null })[] };
  latest: AlertView[];
  /** Undefined when Redis did not answer: the alert figures still show. */
  queues: QueueDepth[] | undefined;
}

export interface PageLinks {
  page: string;
  bullBoard: string;
  usage: string;
  /** The page with its current filters and one parameter set: for links that narrow or resize it. */
  withParam(key: "service" | "status" | "limit", value: string): string;
}

const num = (n: number) => (n === 0 ? html`<span class="zero">0</span>` : formatCount(n));

function kpi(label: string, value: number, sub: Html | string, cls: string, stat: string): Html {
  return html`<div class="card kpi ${cls}">
    <div class="kpi-label">${label}</div>
    <div class="kpi-value" data-stat="${stat}">${formatCount(value)}</div>
    <div class="kpi-sub">${sub}</div>
  </div>`;
}

const share = (n: number, total: number) => (total === 0 ? "—" : `${Math.round((n / total) * 100)}%`);

function timingKpi(label: string, d: DurationStats, stat: string, what: string): Html {
  return html`<div class="card kpi timing">
    <div class="kpi-head"><div class="kpi-label">${label} · mean</div>
      <div class="kpi-n">of ${formatCount(d.count)} ${what}</div></div>
    <div class="kpi-value" data-stat="${stat}">${formatDuration(d.mean)}</div>
    <div class="kpi-sub">p50 <b>${formatDuration(d.p50)}</b> · p95 <b>${formatDuration(d.p95)}</b></div>
  </div>`;
}

/** Share of each status as a stacked bar; SVG attributes, so no inline styles for the CSP. */
function statusBar(byStatus: Record<AlertStatus, number>): Html {
  const total = ALERT_STATUSES.reduce((sum, s) => sum + byStatus[s], 0);
  let x = 0;
  const rects = ALERT_STATUSES.map((s) => {
    const width = total === 0 ? 0 : (byStatus[s] / total) * 100;
    const rect = html`<rect class="${s}" x="${x.toFixed(2)}" width="${width.toFixed(2)}" height="8"></rect>`;
    x += width;
    return rect;
  });
  const label = ALERT_STATUSES.map((s) => `${byStatus[s]} ${STATUS_LABELS[s].toLowerCase()}`).join(", ");
  return html`<svg class="bar" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label="${label}">
    ${rects}
  </svg>`;
}

function servicesTable(groups: (AlertStats & { key: string | null })[], links: PageLinks): Html {
  if (groups.length === 0) return html`<div class="empty">No alerts match these filters yet.</div>`;
  const rows = groups.map(
    (g) => html`<tr data-service="${g.key ?? ""}">
      <td class="wrap-cell">
        ${g.key === null ? html`<span class="muted">(no service)</span>` : html`<a href="${links.withParam("service", g.key)}">${g.key}</a>`}
      </td>
      <td>${statusBar(g.byStatus)}</td>
      <td class="num" data-col="total">${formatCount(g.total)}</td>
      <td class="num c-TRIGGERED" data-col="TRIGGERED">${num(g.byStatus.TRIGGERED)}</td>
      <td class="num c-ACKNOWLEDGED" data-col="ACKNOWLEDGED">${num(g.byStatus.ACKNOWLEDGED)}</td>
      <td class="num c-RESOLVED" data-col="RESOLVED">${num(g.byStatus.RESOLVED)}</td>
      <td class="num">${formatDuration(g.timeToAcknowledgeMs.mean)}</td>
      <td class="num muted">${formatDuration(g.timeToAcknowledgeMs.p95)}</td>
      <td class="num">${formatDuration(g.timeToResolveMs.mean)}</td>
      <td class="num muted">${formatDuration(g.timeToResolveMs.p95)}</td>
    </tr>`,
  );
  return html`<div class="table-wrap"><table id="services">
    <thead><tr>
      <th>Service</th><th>Status mix</th><th class="num">Alerts</th><th class="num">Triggered</th>
      <th class="num">Acked</th><th class="num">Resolved</th><th class="num">MTTA</th><th class="num">p95</th>
      <th class="num">MTTR</th><th class="num">p95</th>
    </tr></thead>
    <tbody>${rows}</tbody>
  </table></div>`;
}

function queueTiles(queues: QueueDepth[] | undefined, links: PageLinks): Html {
  if (queues === undefined)
    return html`<div class="empty">Queue depths are unavailable: Redis did not answer.</div>`;
  const stat = (label: string, n: number, cls = "") =>
    html`<div class="qstat ${cls}"><span>${label}</span><b>${num(n)}</b></div>`;
  const tiles = queues.map(
    (q) => html`<div class="queue" data-queue="${q.name}">
      <a class="queue-name" href="${`${links.bullBoard}/queue/${encodeURIComponent(q.name)}`}">${q.name}</a>
      <div class="qstats">
        ${stat("Waiting", q.counts.waiting)}${stat("Active", q.counts.active)}
        ${stat("Delayed", q.counts.delayed)}${stat("Failed", q.counts.failed, q.counts.failed > 0 ? "failed" : "")}
      </div>
    </div>`,
  );
  return html`<div class="queues" id="queues">${tiles}</div>`;
}

function alertsTable(alerts: AlertView[], links: PageLinks): Html {
  if (alerts.length === 0) return html`<div class="empty">No alerts match these filters yet.</div>`;
  const rows = alerts.map(
    (a) => html`<tr data-alert-id="${a.alertId}">
      <td><a href="${links.withParam("status", a.status)}"><span class="badge ${a.status}">${STATUS_LABELS[a.status]}</span></a></td>
      <td class="wrap-cell">${a.name}<div class="mono muted">${a.alertId}</div></td>
      <td>${a.service.name ?? html`<span class="muted">—</span>`}</td>
      <td>${a.responder.name ?? html`<span class="muted">—</span>`}</td>
      <td>${formatInstant(a.triggeredOn)}</td>
      <td class="num">${formatDuration(spanMs(a.triggeredOn, a.acknowledgedOn))}</td>
      <td class="num">${formatDuration(spanMs(a.triggeredOn, a.resolvedOn))}</td>
    </tr>`,
  );
  return html`<div class="table-wrap"><table id="alerts">
    <thead><tr>
      <th>Status</th><th>Alert</th><th>Service</th><th>Responder</th><th>Triggered (UTC)</th>
      <th class="num">To ack</th><th class="num">To resolve</th>
    </tr></thead>
    <tbody>${rows}</tbody>
  </table></div>`;
}

function pageSizeLinks(links: PageLinks, limit: number, sizes: readonly number[]): Html {
  return html`<span class="sizes">Show ${sizes.map((n) =>
    n === limit
      ? html`<b aria-current="true">${n}</b>`
      : html`<a href="${links.withParam("limit", String(n))}">${n}</a>`,
  )}</span>`;
}

/** The part of the page that refreshes itself: served alone at <page>/live. */
export function liveSection(data: LiveData, links: PageLinks, limit: number, sizes: readonly number[]): Html {
  const { stats } = data;
  const services = stats.groups ?? [];
  // Alerts without a service form a group of their own, which is not a service.
  const named = services.filter((g) => g.key !== null).length;
  return html`<section class="kpis">
      ${kpi("Alerts", stats.total, `across ${formatCount(named)} ${named === 1 ? "service" : "services"}`, "", "total")}
      ${ALERT_STATUSES.map((s) =>
        kpi(
          STATUS_LABELS[s],
          stats.byStatus[s],
          `${share(stats.byStatus[s], stats.total)} of alerts`,
          s.toLowerCase(),
          s,
        ),
      )}
      ${timingKpi("MTTA", stats.timeToAcknowledgeMs, "mtta", "acknowledged")}
      ${timingKpi("MTTR", stats.timeToResolveMs, "mttr", "resolved")}
    </section>
    <section class="card">
      <div class="card-head"><h2>Queues</h2><span class="hint">jobs by state, now</span>
        <a class="more" href="${links.bullBoard}">Open Bull Board →</a></div>
      ${queueTiles(data.queues, links)}
    </section>
    <section class="card">
      <div class="card-head"><h2>By service</h2><span class="hint">busiest first · times measured from trigger</span></div>
      ${servicesTable(services, links)}
    </section>
    <section class="card">
      <div class="card-head"><h2>Latest alerts</h2><span class="hint">newest first</span>
        ${pageSizeLinks(links, limit, sizes)}</div>
      ${alertsTable(data.latest, links)}
    </section>`;
}

export interface PageModel {
  nonce: string;
  links: PageLinks;
  /** What the form shows: the raw values when they did not parse, so the operator can fix them. */
  form: Record<"name" | "service" | "responder" | "status" | "from" | "to" | "limit", string>;
  errors: { field: string; message: string }[];
  /** Undefined when the filters did not parse or Postgres did not answer. */
  live: Html | undefined;
  liveSrc: string | undefined;
  unavailable?: string;
  refreshMs: number;
}

/**
 * The header every operator page shares: the navigation (the current page marked) and the live
 * indicator, whose state ("live", "stale", "off") and text the page's script keeps current.
 */
export function topbar(
  links: Pick<PageLinks, "page" | "usage" | "bullBoard">,
  active: "alerts" | "usage",
  liveState: "live" | "stale" | "off",
  liveText: string,
): Html {
  const tab = (name: typeof active, href: string, label: string) =>
    html`<a${active === name ? raw(' class="active" aria-current="page"') : ""} href="${href}">${label}</a>`;
  return html`<header class="topbar">
    <div class="wrap topbar-inner">
      <div class="brand"><span class="logo">◆</span>Conveyor <span class="sub">Operations</span></div>
      <nav>${tab("alerts", links.page, "Alerts")}${tab("usage", links.usage, "Usage")}<a href="${links.bullBoard}">Queues</a></nav>
      <div class="live" id="live-status" data-state="${liveState}">
        <span class="dot"></span><span id="live-text">${liveText}</span>
      </div>
    </div>
  </header>`;
}

const textField = (name: "name" | "service" | "responder", label: string, value: string, hint: string) =>
  html`<div class="field grow"><label for="f-${name}">${label}</label>
    <input type="text" id="f-${name}" name="${name}" value="${value}" placeholder="${hint}" autocomplete="off"></div>`;

/** Minutes are enough to type; seconds only when a link or an earlier form carried them. */
const stepOf = (value: string) => (/T\d{2}:\d{2}:\d{2}/.test(value) ? 1 : 60);

export function page(m: PageModel): Html {
  const f = m.form;
  const notice =
    m.errors.length > 0
      ? html`<div class="notice" role="alert"><strong>Some filters are not valid:</strong>
          <ul>${m.errors.map((e) => html`<li><b>${e.field}</b>: ${e.message}</li>`)}</ul></div>`
      : m.unavailable
        ? html`<div class="notice" role="alert">${m.unavailable}</div>`
        : "";
  return html`<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <!-- An empty icon, so the browser does not ask for /favicon.ico (a 404 on every load). -->
  <link rel="icon" href="data:,">
  <title>Alerts · Conveyor operations</title>
  <style nonce="${m.nonce}">${raw(PAGE_CSS)}</style>
</head>
<body>
  ${topbar(m.links, "alerts", m.liveSrc ? "live" : "off", m.liveSrc ? "Live" : "Paused")}
  <main class="wrap">
    <form class="card filters" method="get" action="${m.links.page}">
      ${textField("name", "Alert name", f.name, "exact name")}
      ${textField("service", "Service", f.service, "exact service")}
      ${textField("responder", "Responder", f.responder, "exact responder")}
      <div class="field"><label for="f-status">Status</label>
        <select id="f-status" name="status">
          <option value="">Any</option>
          ${ALERT_STATUSES.map((s) => html`<option value="${s}"${f.status === s ? raw(" selected") : ""}>${STATUS_LABELS[s]}</option>`)}
        </select></div>
      <div class="field"><label for="f-from">Triggered from (UTC)</label>
        <input type="datetime-local" step="${stepOf(f.from)}" id="f-from" name="from" value="${f.from}"></div>
      <div class="field"><label for="f-to">Triggered to (UTC)</label>
        <input type="datetime-local" step="${stepOf(f.to)}" id="f-to" name="to" value="${f.to}"></div>
      ${f.limit === String(DEFAULT_PAGE_SIZE) ? "" : html`<input type="hidden" name="limit" value="${f.limit}">`}
      <div class="actions">
        <a class="btn secondary" href="${m.links.page}">Clear</a>
        <button class="btn" type="submit">Apply filters</button>
      </div>
    </form>
    ${notice}
    <div id="live" data-src="${m.liveSrc ?? ""}" data-refresh-ms="${m.refreshMs}">${m.live ?? ""}</div>
    <noscript><p class="muted small">Without JavaScript this page does not refresh itself: reload it.</p></noscript>
  </main>
  <script nonce="${m.nonce}">${raw(PAGE_SCRIPT)}</script>
</body>
</html>`;
}
