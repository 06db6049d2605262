export * from "./alerts.js";
export * from "./secrets.js";
