// Alerts: one row per alertId, merged from ALERT_CREATED / ALERT_CHANGED events.
import { index, pgEnum, pgTable, text, timestamp } from "drizzle-orm/pg-core";

// Declared in lifecycle order: Postgres compares enum values by declaration order, so
// GREATEST(status, …) never moves an alert backwards.
export const alertStatus = pgEnum("alert_status", ["TRIGGERED", "ACKNOWLEDGED", "RESOLVED"]);
export const ALERT_STATUSES = alertStatus.enumValues;
export type AlertStatus = (typeof ALERT_STATUSES)[number];

export const alerts = pgTable(
  "alerts",
  {
    alertId: text().primaryKey(),
    name: text().notNull(),
    status: alertStatus().notNull(),
    // The status before the latest merge that wrote the row (null: that merge created it; equal to
    // status: it filled in something else). The merge returns it, so it knows which alerts it moved
    // (alert.* notifications) without a second read.
    statusBefore: alertStatus(),
    responderId: text(),
    responderName: text(),
    serviceId: text(),
    serviceName: text(),
    triggeredOn: timestamp({ withTimezone: true, precision: 3 }).notNull(),
    acknowledgedOn: timestamp({ withTimezone: true, precision: 3 }),
    resolvedOn: timestamp({ withTimezone: true, precision: 3 }),
    createdAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp({ withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("alerts_triggered_on_idx").on(t.triggeredOn.desc(), t.alertId.desc()),
    index("alerts_service_name_idx").on(t.serviceName, t.triggeredOn.desc()),
    index("alerts_responder_name_idx").on(t.responderName, t.triggeredOn.desc()),
    index("alerts_name_idx").on(t.name, t.triggeredOn.desc()),
    index("alerts_status_idx").on(t.status, t.triggeredOn.desc()),
  ],
);
