CREATE TYPE "public"."alert_status" AS ENUM('TRIGGERED', 'ACKNOWLEDGED', 'RESOLVED');--> statement-breakpoint
CREATE TABLE "alerts" (
	"alert_id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"status" "alert_status" NOT NULL,
	"responder_id" text,
	"responder_name" text,
	"service_id" text,
	"service_name" text,
	"triggered_on" timestamp (3) with time zone NOT NULL,
	"acknowledged_on" timestamp (3) with time zone,
	"resolved_on" timestamp (3) with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "alerts_triggered_on_idx" ON "alerts" USING btree ("triggered_on" DESC NULLS LAST,"alert_id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "alerts_service_name_idx" ON "alerts" USING btree ("service_name","triggered_on" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "alerts_responder_name_idx" ON "alerts" USING btree ("responder_name","triggered_on" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "alerts_name_idx" ON "alerts" USING btree ("name","triggered_on" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "alerts_status_idx" ON "alerts" USING btree ("status","triggered_on" DESC NULLS LAST);