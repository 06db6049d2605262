// Preloaded (`--import ./bench/parent-guard.ts`) into every process the benchmark starts with an
// IPC channel: when the benchmark dies without cleaning up (SIGKILL, crash), the channel closes
// and the child shuts itself down gracefully instead of living on as an orphan.
if (process.channel) {
  process.channel.unref();
  process.once("disconnect", () => process.kill(process.pid, "SIGTERM"));
}

export {};
