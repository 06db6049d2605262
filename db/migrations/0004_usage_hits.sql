-- Hits, one row each, range-partitioned by UTC day on `at`: a day's partition is created ahead of
-- time by the `usage.maintainPartitions` job (and on demand by a write that finds none), and
-- dropped whole after USAGE_RETENTION_DAYS, which costs no DELETE and no vacuum. The primary key
-- (id, at) includes the partition key, as Postgres requires; a hit's id is unique by itself
-- (random, from the API), and a batch delivered twice inserts nothing the second time
-- (ON CONFLICT DO NOTHING), so the rollups, fed from the rows actually inserted, count it once.
CREATE TABLE "api_hits" (
	"id" text NOT NULL,
	"account_id" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"ip" inet NOT NULL,
	"endpoint" text NOT NULL,
	"method" text,
	"status" smallint,
	CONSTRAINT "api_hits_pk" PRIMARY KEY ("id", "at")
) PARTITION BY RANGE ("at");
--> statement-breakpoint
-- A client's hits by time: partition pruning picks the days, this index the client.
CREATE INDEX "api_hits_account_at_idx" ON "api_hits" USING btree ("account_id", "at");
