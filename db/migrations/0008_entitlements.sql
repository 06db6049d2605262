CREATE TABLE "access_request_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"request_id" text NOT NULL,
	"action" text NOT NULL,
	"actor_id" text,
	"frequencies" text[] DEFAULT '{}'::text[] NOT NULL,
	"reason" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "access_requests" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"dataset_symbol" text NOT NULL,
	"frequencies" text[] NOT NULL,
	"note" text,
	"status" text DEFAULT 'pending' NOT NULL,
	"granted_frequencies" text[] DEFAULT '{}'::text[] NOT NULL,
	"decided_by" text,
	"decided_at" timestamp with time zone,
	"decision_reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "datasets" (
	"symbol" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"coincap_slug" text NOT NULL,
	"frequencies" text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "entitlements" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"dataset_symbol" text NOT NULL,
	"frequency" text NOT NULL,
	"request_id" text,
	"granted_by" text,
	"granted_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"revoked_by" text,
	"revoke_reason" text,
	"expiry_notified_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "market_caps" (
	"dataset_symbol" text NOT NULL,
	"day" date NOT NULL,
	"market_cap_usd" numeric NOT NULL,
	"method" text NOT NULL,
	"source" text NOT NULL,
	"fetched_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "market_caps_dataset_symbol_day_pk" PRIMARY KEY("dataset_symbol","day")
);
--> statement-breakpoint
CREATE TABLE "prices" (
	"dataset_symbol" text NOT NULL,
	"frequency" text NOT NULL,
	"time" timestamp with time zone NOT NULL,
	"price_usd" numeric NOT NULL,
	"circulating_supply" numeric,
	"source" text NOT NULL,
	"fetched_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "prices_dataset_symbol_frequency_time_pk" PRIMARY KEY("dataset_symbol","frequency","time")
);
--> statement-breakpoint
ALTER TABLE "access_request_events" ADD CONSTRAINT "access_request_events_request_id_access_requests_id_fk" FOREIGN KEY ("request_id") REFERENCES "public"."access_requests"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "access_request_events" ADD CONSTRAINT "access_request_events_actor_id_accounts_id_fk" FOREIGN KEY ("actor_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "access_requests" ADD CONSTRAINT "access_requests_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "access_requests" ADD CONSTRAINT "access_requests_dataset_symbol_datasets_symbol_fk" FOREIGN KEY ("dataset_symbol") REFERENCES "public"."datasets"("symbol") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "access_requests" ADD CONSTRAINT "access_requests_decided_by_accounts_id_fk" FOREIGN KEY ("decided_by") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entitlements" ADD CONSTRAINT "entitlements_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entitlements" ADD CONSTRAINT "entitlements_dataset_symbol_datasets_symbol_fk" FOREIGN KEY ("dataset_symbol") REFERENCES "public"."datasets"("symbol") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entitlements" ADD CONSTRAINT "entitlements_request_id_access_requests_id_fk" FOREIGN KEY ("request_id") REFERENCES "public"."access_requests"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entitlements" ADD CONSTRAINT "entitlements_granted_by_accounts_id_fk" FOREIGN KEY ("granted_by") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "entitlements" ADD CONSTRAINT "entitlements_revoked_by_accounts_id_fk" FOREIGN KEY ("revoked_by") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "market_caps" ADD CONSTRAINT "market_caps_dataset_symbol_datasets_symbol_fk" FOREIGN KEY ("dataset_symbol") REFERENCES "public"."datasets"("symbol") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "prices" ADD CONSTRAINT "prices_dataset_symbol_datasets_symbol_fk" FOREIGN KEY ("dataset_symbol") REFERENCES "public"."datasets"("symbol") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "access_request_events_request_idx" ON "access_request_events" USING btree ("request_id","id");--> statement-breakpoint
CREATE INDEX "access_requests_account_idx" ON "access_requests" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX "access_requests_pending_idx" ON "access_requests" USING btree ("created_at") WHERE status = 'pending';--> statement-breakpoint
CREATE UNIQUE INDEX "entitlements_in_force_key" ON "entitlements" USING btree ("account_id","dataset_symbol","frequency") WHERE revoked_at is null;--> statement-breakpoint
CREATE INDEX "entitlements_expiry_idx" ON "entitlements" USING btree ("expires_at") WHERE revoked_at is null and expiry_notified_at is null;--> statement-breakpoint
INSERT INTO "datasets" ("symbol", "name", "coincap_slug", "frequencies") VALUES
	('BTC', 'Bitcoin', 'bitcoin', ARRAY['1h', '1d', '1mo']),
	('ETH', 'Ethereum', 'ethereum', ARRAY['1d'])
ON CONFLICT DO NOTHING;
