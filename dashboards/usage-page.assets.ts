// The Usage tab's stylesheet (after the operator page's) and script, inlined like the operator
// page's. Constants only: no data is ever spliced in.

export const USAGE_CSS = `
.usage-kpis { grid-template-columns: repeat(3, minmax(0, 1fr)); }
.usage-grid { display: grid; grid-template-columns: minmax(260px, 1fr) minmax(0, 2.4fr); gap: 16px; align-items: start; }
.client { word-break: break-all; }
#top-clients { list-style: none; margin: 0; padding: 0 16px 10px; counter-reset: top; }
#top-clients li { display: grid; grid-template-columns: 1fr auto; gap: 6px 12px; padding: 10px 0; border-top: 1px solid #edf0f4;
  counter-increment: top; font-variant-numeric: tabular-nums; }
#top-clients li .client::before { content: counter(top) ". "; color: var(--muted); font-family: system-ui, sans-serif; }
#top-clients b { font-size: 15px; font-weight: 650; }
#top-clients .share { grid-column: 1 / -1; display: block; width: 100%; height: 6px; border-radius: 3px; background: #eef1f5; }
#top-clients .share rect { fill: var(--accent); }
td.chart, th.chart { width: 1%; padding-top: 4px; padding-bottom: 4px; }
svg.week, svg.days { display: block; }
svg.week rect.day { fill: #b4c4f4; }
svg.week rect.today { fill: var(--accent); }
svg.week rect:hover { fill: #1d3fb0; }
svg.week .axis { stroke: #d5dbe4; stroke-width: 1; }
svg.days text { font-size: 10px; font-weight: 600; fill: var(--muted); text-anchor: middle; text-transform: none; letter-spacing: 0; }
svg.days text.date { font-size: 9px; font-weight: 400; }
svg.days text.today { fill: var(--accent); }
.note { margin: 0 16px 10px; padding: 8px 12px; border-radius: 6px; border: 1px solid #f1dcb0; background: #fdf6e7;
  color: #7a5200; font-size: 12px; }
@media (max-width: 1100px) {
  .usage-grid { grid-template-columns: 1fr; }
}
`;

/**
 * Listens to data-stream (Server-Sent Events: one `usage` event per committed batch) and adds each
 * batch to the figures in place: the day's bar of the client's chart, its Today and 7-day cells,
 * the totals and the top clients. The figures are read again from data-src (the server renders
 * and escapes them) whenever the stream (re)opens, every minute (the windows roll by the hour and
 * the day), and, at most every 5 seconds, when a batch names a client or a day the page does not
 * show. A stream that cannot open is tried again every 5 seconds.
 */
export const USAGE_SCRIPT = `
(() => {
  const root = document.getElementById("usage");
  const status = document.getElementById("live-status");
  const text = document.getElementById("live-text");
  if (!root || !status || !text || !root.dataset.stream || typeof EventSource === "undefined") return;
  const READ_EVERY_MS = 60000;
  const READ_GAP_MS = 5000;
  const RETRY_MS = 5000;
  const fmt = new Intl.NumberFormat("en-US");
  const clock = () => new Date().toISOString().slice(11, 19) + " UTC";
  let lastBatch = null;
  const show = (state, message) => {
    status.dataset.state = state;
    text.textContent = message;
  };
  const showLive = () => show("live", "Live" + (lastBatch ? " · last batch " + lastBatch : " · no batch yet"));

  let reading = false;
  let lastRead = 0;
  let soon = null;
  const read = async () => {
    if (reading) return;
    reading = true;
    lastRead = Date.now();
    try {
      const res = await fetch(root.dataset.src, { cache: "no-store", headers: { accept: "text/html" } });
      // A 503 (Postgres down) keeps the figures the page has, which live batches still add to.
      if (res.ok) {
        root.innerHTML = await res.text();
        root.dataset.read = String(lastRead);
      }
    } catch {
      // Kept as they are; the next read or batch tries again.
    } finally {
      reading = false;
    }
  };
  const readSoon = () => {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      read();
    }, Math.max(0, lastRead + READ_GAP_MS - Date.now()));
  };

  const setN = (el, n) => {
    el.dataset.n = String(n);
    el.textContent = fmt.format(n);
  };
  const addN = (el, n) => el && setN(el, Number(el.dataset.n || 0) + n);
  const find = (selector, id) => Array.from(root.querySelectorAll(selector)).find((el) => el.dataset.client === id);
  const rescale = (svg) => {
    const bars = Array.from(svg.querySelectorAll("rect[data-requests]"));
    const max = Math.max(1, ...bars.map((b) => Number(b.dataset.requests)));
    const base = Number(svg.dataset.base);
    const span = Number(svg.dataset.span);
    const min = Number(svg.dataset.min);
    for (const bar of bars) {
      const n = Number(bar.dataset.requests);
      const h = n === 0 ? 0 : Math.max(min, (n / max) * span);
      bar.setAttribute("y", (base - h).toFixed(2));
      bar.setAttribute("height", h.toFixed(2));
      const title = bar.querySelector("title");
      if (title) title.textContent = bar.dataset.date + ": " + fmt.format(n) + (n === 1 ? " request" : " requests");
    }
  };

  /** Adds one client's hits of one hour; false when the page does not show that client or day. */
  const apply = (hit) => {
    const id = String(hit.client_id);
    const added = Number(hit.added) || 0;
    const date = String(hit.hour).slice(0, 10);
    let shown = true;
    const table = root.querySelector("#usage-chart");
    const dates = table ? table.dataset.dates.split(" ") : [];
    const today = dates[dates.length - 1];
    if (dates.includes(date)) {
      if (date === today) addN(root.querySelector('[data-usage="today"]'), added);
      addN(root.querySelector('[data-usage="week"]'), added);
      const row = find("#usage-chart tr[data-client]", id);
      if (row) {
        const bar = Array.from(row.querySelectorAll("rect[data-date]")).find((r) => r.dataset.date === date);
        if (bar) {
          bar.dataset.requests = String(Number(bar.dataset.requests) + added);
          rescale(bar.ownerSVGElement);
        }
        if (date === today) addN(row.querySelector('[data-col="today"]'), added);
        addN(row.querySelector('[data-col="week"]'), added);
        // Busiest first, as the server orders them.
        const weekOf = (r) => Number(r.querySelector('[data-col="week"]').dataset.n);
        const body = row.parentElement;
        body.append(
          ...Array.from(body.children).sort(
            (a, b) => weekOf(b) - weekOf(a) || (a.dataset.client < b.dataset.client ? -1 : 1),
          ),
        );
      } else shown = false;
    } else shown = false;
    const item = find("#top-clients li[data-client]", id);
    if (item) {
      item.dataset.n = String(Number(item.dataset.n) + added);
      setN(item.querySelector('[data-col="requests"]'), Number(item.dataset.n));
      const list = item.parentElement;
      const items = Array.from(list.children).sort(
        (a, b) => Number(b.dataset.n) - Number(a.dataset.n) || (a.dataset.client < b.dataset.client ? -1 : 1),
      );
      list.append(...items);
      const max = Math.max(1, Number(items[0].dataset.n));
      for (const li of items) {
        const rect = li.querySelector(".share rect");
        if (rect) rect.setAttribute("width", ((Number(li.dataset.n) / max) * 100).toFixed(2));
      }
    } else shown = false;
    return shown;
  };

  const connect = () => {
    const source = new EventSource(root.dataset.stream);
    // (Re)opened: whatever was committed while it was closed is in the figures read now.
    source.addEventListener("ready", () => {
      showLive();
      read();
    });
    source.addEventListener("heartbeat", showLive);
    source.addEventListener("usage", (event) => {
      let shown = true;
      try {
        for (const hit of JSON.parse(event.data).hits) shown = apply(hit) && shown;
      } catch {
        shown = false;
      }
      if (!shown) readSoon();
      lastBatch = clock();
      showLive();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (Redis down: 503), so the browser will not retry by itself.
        show("off", "Live updates unavailable · retrying");
        setTimeout(connect, RETRY_MS);
      } else show("stale", "Reconnecting");
    });
  };
  connect();
  setInterval(() => {
    if (!document.hidden) read();
  }, READ_EVERY_MS);
})();
`;
