// The operator page's stylesheet and script, inlined (no build step, no external assets: the
// page must work on a machine without internet). Constants only: no data is ever spliced in.

export const PAGE_CSS = `
:root {
  --bg: #f4f6f9; --card: #fff; --border: #e2e7ee; --text: #1c2430; --muted: #6b7686;
  --accent: #2f5bea; --triggered: #d64545; --acknowledged: #d98b0b; --resolved: #23945a;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.wrap { max-width: 1320px; margin: 0 auto; padding: 0 24px; }
.topbar { background: #141b26; color: #e8edf4; }
.topbar-inner { display: flex; align-items: center; gap: 28px; height: 56px; }
.brand { font-weight: 650; font-size: 16px; letter-spacing: .2px; display: flex; align-items: center; gap: 8px; }
.brand .logo { color: #6f95ff; }
.brand .sub { color: #8d99ab; font-weight: 450; }
.topbar nav { display: flex; gap: 4px; }
.topbar nav a { color: #b7c2d2; padding: 6px 12px; border-radius: 6px; }
.topbar nav a:hover { background: #222c3b; text-decoration: none; color: #fff; }
.topbar nav a.active { background: #27344a; color: #fff; }
.live { margin-left: auto; display: flex; align-items: center; gap: 8px; font-size: 13px; color: #b7c2d2;
  font-variant-numeric: tabular-nums; }
.live .dot { width: 8px; height: 8px; border-radius: 50%; background: #3ccf7a; box-shadow: 0 0 0 3px rgba(60,207,122,.18); }
.live[data-state="stale"] .dot { background: #f0a020; box-shadow: 0 0 0 3px rgba(240,160,32,.2); }
.live[data-state="off"] .dot { background: #8d99ab; box-shadow: none; }
main.wrap { padding-top: 20px; padding-bottom: 40px; }
.card { background: var(--card); border: 1px solid var(--border); border-radius: 10px;
  box-shadow: 0 1px 2px rgba(16,24,40,.04); }
.filters { display: flex; flex-wrap: wrap; align-items: flex-end; gap: 12px; padding: 14px 16px; margin-bottom: 16px; }
.field { display: flex; flex-direction: column; gap: 4px; }
.field label { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.field input, .field select { height: 32px; padding: 0 8px; border: 1px solid #cfd6e0; border-radius: 6px;
  font: inherit; color: inherit; background: #fff; min-width: 0; }
.field.grow { flex: 1 1 120px; }
.field input[type="datetime-local"] { width: 200px; }
.field.grow input { width: 100%; }
.field select { width: 140px; }
.field input:focus, .field select:focus { outline: 2px solid rgba(47,91,234,.25); border-color: var(--accent); }
.actions { display: flex; gap: 8px; margin-left: auto; }
.btn { height: 32px; padding: 0 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent);
  color: #fff; font: inherit; font-weight: 600; cursor: pointer; display: inline-flex; align-items: center; }
.btn.secondary { background: #fff; color: var(--text); border-color: #cfd6e0; font-weight: 500; }
.btn:hover { text-decoration: none; filter: brightness(.97); }
.notice { padding: 12px 16px; margin-bottom: 16px; border-radius: 8px; border: 1px solid #f1c0c0; background: #fdf1f1; color: #8a1f1f; }
.notice ul { margin: 6px 0 0; padding-left: 18px; }
.kpis { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)) repeat(2, minmax(0, 1.6fr)); gap: 12px; margin-bottom: 16px; }
.kpi { padding: 14px 16px; position: relative; overflow: hidden; }
.kpi::before { content: ""; position: absolute; left: 0; top: 0; bottom: 0; width: 3px; background: var(--border); }
.kpi.triggered::before { background: var(--triggered); }
.kpi.acknowledged::before { background: var(--acknowledged); }
.kpi.resolved::before { background: var(--resolved); }
.kpi.timing::before { background: var(--accent); }
.kpi-head { display: flex; align-items: baseline; gap: 8px; }
.kpi-n { margin-left: auto; font-size: 11px; color: var(--muted); white-space: nowrap; }
.kpi-label { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.kpi-value { font-size: 28px; font-weight: 650; margin-top: 4px; font-variant-numeric: tabular-nums; letter-spacing: -.5px; }
.kpi-sub { font-size: 12px; color: var(--muted); margin-top: 2px; font-variant-numeric: tabular-nums; }
.kpi-sub b { color: var(--text); font-weight: 600; }
main section.card { margin-bottom: 16px; }
.card-head { display: flex; align-items: baseline; gap: 10px; padding: 14px 16px 10px; }
.card-head h2 { font-size: 14px; margin: 0; font-weight: 650; }
.card-head .hint { color: var(--muted); font-size: 12px; }
.card-head .more, .card-head .sizes { margin-left: auto; font-size: 12px; }
.sizes { color: var(--muted); }
.sizes a, .sizes b { margin-left: 6px; padding: 1px 6px; border-radius: 4px; }
.sizes b { background: #eef2fb; color: var(--accent); }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 8px 16px; text-align: left; border-top: 1px solid #edf0f4; white-space: nowrap; }
th { font-size: 11px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; background: #fafbfc; }
td.num, th.num { text-align: right; }
tbody tr:hover td { background: #f8fafc; }
td.wrap-cell { white-space: normal; min-width: 180px; }
.muted { color: var(--muted); }
.small { font-size: 12px; }
.mono { font-family: var(--mono); font-size: 12px; }
.empty { padding: 18px 16px 22px; color: var(--muted); border-top: 1px solid #edf0f4; }
.badge { display: inline-block; padding: 2px 8px; border-radius: 999px; font-size: 11px; font-weight: 650; letter-spacing: .3px; }
.badge.TRIGGERED { background: #fde8e8; color: #b42323; }
.badge.ACKNOWLEDGED { background: #fdf1dc; color: #9a5f00; }
.badge.RESOLVED { background: #e1f4ea; color: #1b7445; }
.c-TRIGGERED { color: var(--triggered); }
.c-ACKNOWLEDGED { color: var(--acknowledged); }
.c-RESOLVED { color: var(--resolved); }
.zero { color: #b5bdc9; }
.bar { display: block; width: 120px; height: 8px; border-radius: 4px; overflow: hidden; background: #eef1f5; }
.bar .TRIGGERED { fill: var(--triggered); }
.bar .ACKNOWLEDGED { fill: var(--acknowledged); }
.bar .RESOLVED { fill: var(--resolved); }
.queues { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; padding: 4px 16px 16px; }
.queue { border: 1px solid #edf0f4; border-radius: 8px; padding: 10px 12px; background: #fbfcfd; }
.queue-name { font-weight: 600; font-family: var(--mono); font-size: 13px; }
.qstats { display: grid; grid-template-columns: repeat(4, 1fr); gap: 4px; margin-top: 8px; font-variant-numeric: tabular-nums; }
.qstat > span { display: block; font-size: 10px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.qstat b { font-size: 16px; font-weight: 650; }
.qstat.failed b { color: var(--triggered); }
@media (max-width: 1100px) {
  .kpis { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .actions { margin-left: 0; }
}
`;

/**
 * Refreshes #live from its data-src every data-refresh-ms (about a second): the server renders
 * the fragment (and escapes every value), so this only swaps it in. One request at a time, none
 * while the tab is hidden, and the header says when the figures stopped being current.
 */
export const PAGE_SCRIPT = `
(() => {
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  const text = document.getElementById("live-text");
  if (!live || !status || !text || !live.dataset.src) return;
  const every = Number(live.dataset.refreshMs) || 1000;
  const clock = () => new Date().toISOString().slice(11, 19) + " UTC";
  let last = null;
  let lastOk = clock();
  const show = (state, message) => {
    status.dataset.state = state;
    text.textContent = message;
  };
  const tick = async () => {
    if (!document.hidden) {
      try {
        const res = await fetch(live.dataset.src, { cache: "no-store", headers: { accept: "text/html" } });
        if (!res.ok) throw new Error("HTTP " + res.status);
        const body = await res.text();
        if (body !== last) {
          live.innerHTML = body;
          last = body;
        }
        lastOk = clock();
        show("live", "Live · updated " + lastOk);
      } catch {
        show("stale", "Reconnecting · last update " + lastOk);
      }
    }
    setTimeout(tick, every);
  };
  show("live", "Live · updated " + lastOk);
  setTimeout(tick, every);
})();
`;
