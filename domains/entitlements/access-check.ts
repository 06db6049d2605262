// The access check every price read makes: does the account hold a grant in force (not revoked,
// not expired) for this dataset and frequency? One indexed lookup (entitlements_in_force_key).
import type { Sql } from "../../db/client.js";

/** The frequencies of `symbol` that `accountId` may read at `now`. */
export async function frequenciesInForce(
  sql: Sql,
  q: { accountId: string; symbol: string; now: Date },
): Promise<string[]> {
  const rows = await sql<{ frequency: string }[]>`
    select frequency from entitlements
    where account_id = ${q.accountId} and dataset_symbol = ${q.symbol} and revoked_at is null
      and (expires_at is null or expires_at > ${q.now})`;
  return rows.map((r) => r.frequency);
}
