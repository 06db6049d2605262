// A resumable Server-Sent Events stream: a `ready` event, then each event as it happens, with its
// id, heartbeats, and on reconnect (Last-Event-ID) what was missed. The caller subscribes to its
// live source before the missed events are read, so nothing that happens in between is lost; an
// event both deliver is sent once (ids are ordered).
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";

export const HEARTBEAT_SECONDS = 15;

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
    const pending: E[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = await source.subscribe((event) => {
      pending.push(event);
      wake?.();
    });
    let open = true;
    sse.onAbort(() => {
      open = false;
      wake?.();
    });
    const heartbeat = setInterval(() => {
      void sse.writeSSE({ event: "heartbeat", data: "{}" });
    }, HEARTBEAT_SECONDS * 1000);
    heartbeat.unref();
    const send = async (event: E) => {
      const id = source.idOf(event);
      if (last !== undefined && source.compareIds(id, last) <= 0) return;
      last = id;
      const shown = source.render(event);
      if (shown) await sse.writeSSE({ id, event: shown.event, data: JSON.stringify(shown.data) });
    };
    try {
      await sse.writeSSE({ event: "ready", data: JSON.stringify({ heartbeat_seconds: HEARTBEAT_SECONDS }) });
      if (resumeFrom !== undefined)
        for (const event of await source.missedSince(resumeFrom)) await send(event);
      while (open) {
        const event = pending.shift();
        if (event) await send(event);
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
    }
  });
}
