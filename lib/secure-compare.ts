// Constant-time comparison of secrets of any length (hash first, so lengths do not leak).
import { createHash, timingSafeEqual } from "node:crypto";

const digest = (s: string) => createHash("sha256").update(s).digest();

export const secureEqual = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b));
