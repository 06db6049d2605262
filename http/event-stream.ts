// A resumable Server-Sent Events stream: a `ready` event, then each event as it happens, with its
// id, heartbeats, and on reconnect (Last-Event-ID) what was missed. The caller subscribes to its
// live source before the missed events are read, so nothing that happens in between is lost; an
// event both deliver is sent once (ids are ordered).
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";

export const HEARTBEAT_SECONDS = 15;
/**
 * Events one stream holds while its client does not read them; past it the stream ends (the
 * client reconnects with Last-Event-ID), so a client that stops reading cannot grow the process.
 */
const PENDING_MAX = 1_000;

export interface ResumableStream<E> {
  /** Subscribes to the live events; answers the unsubscribe. */
  subscribe(push: (event: E) => void): Promise<() => void>;
  /** The events after id `lastId`, oldest first (a reconnect). */
  missedSince(lastId: string): Promise<E[]>;
  idOf(event: E): string;
  /** Orders two ids. */
  compareIds(a: string, b: string): number;
  /** The event's name and data as the caller may see them; undefined to send nothing. */
  render(event: E): { event: string; data: unknown } | undefined;
}

export function resumableStream<E>(c: Context, resumeFrom: string | undefined, source: ResumableStream<E>) {
  c.header("Cache-Control", "no-store");
  // Proxies (nginx) must not buffer it.
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (sse) => {
    let last: string | undefined = resumeFrom;
    const pending: { id: string; shown: { event: string; data: unknown } }[] = [];
    let wake: (() => void) | undefined;
    let open = true;
    sse.onAbort(() => {
      open = false;
      wake?.();
    });
    // Only what this caller may see is held; past PENDING_MAX the stream ends.
    const unsubscribe = await source.subscribe((event) => {
      const shown = source.render(event);
      if (!shown) return;
      if (pending.length >= PENDING_MAX) open = false;
      else pending.push({ id: source.idOf(event), shown });
      wake?.();
    });
    const heartbeat = setInterval(() => {
      void sse.writeSSE({ event: "heartbeat", data: "{}" });
    }, HEARTBEAT_SECONDS * 1000);
    heartbeat.unref();
    const send = async (id: string, shown: { event: string; data: unknown } | undefined) => {
      if (last !== undefined && source.compareIds(id, last) <= 0) return;
      last = id;
      if (shown) await sse.writeSSE({ id, event: shown.event, data: JSON.stringify(shown.data) });
    };
    try {
      await sse.writeSSE({ event: "ready", data: JSON.stringify({ heartbeat_seconds: HEARTBEAT_SECONDS }) });
      if (resumeFrom !== undefined)
        for (const event of await source.missedSince(resumeFrom))
          await send(source.idOf(event), source.render(event));
      while (open && !sse.aborted) {
        const next = pending.shift();
        if (next) await send(next.id, next.shown);
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
    }
  });
}
