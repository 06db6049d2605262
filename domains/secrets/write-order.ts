// Write order of secrets: a sequence number taken by the API for every store, so the last store
// submitted for an id wins whatever order workers run the jobs in. One counter serves every
// tenant and id: seqs are only compared within a row, keyed (tenant, id) in Postgres, and any
// order increasing across all stores is increasing per (tenant, id). A key per id would add a
// Redis key per secret for good (noeviction), and the counter tells no one anything: a seq is
// never answered to a client.
import type { Redis } from "ioredis";

// max(previous + 1, Redis time in µs): increasing across every API replica (one key), and still
// ahead of every seq already written if the counter is lost (a Redis restored from an old AOF).
const NEXT_SEQ_SCRIPT = `
local v = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if v < now then
  redis.call('SET', KEYS[1], now)
  return now
end
return v`;

export async function nextSecretSeq(redis: Redis, prefix: string): Promise<number> {
  return Number(await redis.eval(NEXT_SEQ_SCRIPT, 1, `${prefix}:secrets:seq`));
}
