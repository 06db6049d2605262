// Figures as an operator reads them: durations in the largest two units, instants in UTC.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

const pad2 = (n: number) => String(n).padStart(2, "0");

/** 850 ms, 4.2 s, 42 s, 3m 05s, 2h 07m, 3d 4h; an em dash when there is no figure. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  // A negative span means the emitter's clocks disagree; show it rather than hide it.
  const sign = ms < 0 ? "-" : "";
  const abs = Math.abs(ms);
  // Each unit is chosen by the rounded figure, so 59.6 s prints as "1m 00s", never "60 s".
  if (Math.round(abs) < SECOND) return `${sign}${Math.round(abs)} ms`;
  const tenths = Math.round(abs / 100);
  if (tenths < 100) return `${sign}${(tenths / 10).toFixed(1)} s`;
  const seconds = Math.round(abs / SECOND);
  if (seconds < 60) return `${sign}${seconds} s`;
  if (seconds < 60 * 60) return `${sign}${Math.floor(seconds / 60)}m ${pad2(seconds % 60)}s`;
  const minutes = Math.round(abs / MINUTE);
  if (minutes < 24 * 60) return `${sign}${Math.floor(minutes / 60)}h ${pad2(minutes % 60)}m`;
  const hours = Math.round(abs / HOUR);
  return `${sign}${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** 2026-11-21 11:00:05 (UTC; the column headers say so). */
export function formatInstant(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : d.toISOString().slice(0, 19).replace("T", " ");
}

const counts = new Intl.NumberFormat("en-US");

export const formatCount = (n: number): string => counts.format(n);

/** Milliseconds between two instants, or null when either is missing. */
export function spanMs(from: string | null, to: string | null): number | null {
  if (!from || !to) return null;
  return Date.parse(to) - Date.parse(from);
}
