export * from "./alerts.js";
export * from "./entitlements.js";
export * from "./identity.js";
export * from "./notifications.js";
export * from "./secrets.js";
export * from "./usage.js";
export * from "./webhooks.js";
