CREATE TABLE "usage_clients" (
	"account_id" text PRIMARY KEY NOT NULL,
	"client_id" text NOT NULL,
	"ip_allowlist" text[] DEFAULT '{}' NOT NULL,
	"reads_per_minute" integer,
	"reads_per_hour" integer,
	"hits_per_minute" integer,
	"hits_per_hour" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_daily" (
	"account_id" text NOT NULL,
	"day" date NOT NULL,
	"hits" bigint NOT NULL,
	CONSTRAINT "usage_daily_account_id_day_pk" PRIMARY KEY("account_id","day")
);
--> statement-breakpoint
CREATE TABLE "usage_hourly" (
	"account_id" text NOT NULL,
	"hour" timestamp with time zone NOT NULL,
	"hits" bigint NOT NULL,
	CONSTRAINT "usage_hourly_account_id_hour_pk" PRIMARY KEY("account_id","hour")
);
--> statement-breakpoint
ALTER TABLE "usage_clients" ADD CONSTRAINT "usage_clients_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "usage_clients_client_id_key" ON "usage_clients" USING btree ("client_id");--> statement-breakpoint
CREATE INDEX "usage_hourly_hour_idx" ON "usage_hourly" USING btree ("hour");