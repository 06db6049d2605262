// Unguessable identifiers: 128 random bits, URL-safe.
import { randomBytes } from "node:crypto";

export const randomId = (prefix = ""): string => `${prefix}${randomBytes(16).toString("base64url")}`;
