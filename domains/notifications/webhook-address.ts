// Where a webhook may go: a URL whose host resolves only to public addresses (no loopback,
// private, link-local, unique-local, CGNAT, unspecified or cloud metadata address), https in
// production. Checked at registration and again at every delivery, on the very address the
// delivery then connects to (webhook-send.ts pins it), so a name that changes its answer
// (DNS rebinding) gains nothing.
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { AppError } from "../../lib/errors.js";

/** Resolves a host name to its addresses (injectable: tests answer what they like). */
export type Resolver = (hostname: string) => Promise<string[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

const PRIVATE = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["192.0.0.0", 24],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  PRIVATE.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128],
  ["::1", 128],
  ["fe80::", 10],
  ["fc00::", 7],
  ["ff00::", 8],
  ["64:ff9b::", 96],
] as const)
  PRIVATE.addSubnet(net, bits, "ipv6");

/** Refused even when private addresses are allowed: what a cloud serves instance credentials on. */
const METADATA = new BlockList();
METADATA.addAddress("169.254.169.254", "ipv4");
METADATA.addAddress("fd00:ec2::254", "ipv6");

const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** Why a delivery may not connect to `address`, or undefined when it may. */
export function forbiddenAddress(address: string, allowPrivate: boolean): string | undefined {
  const ip = MAPPED_V4.exec(address)?.[1] ?? address;
  const family = isIP(ip);
  if (family === 0) return `${address} is not an IP address`;
  const type = family === 4 ? "ipv4" : "ipv6";
  if (METADATA.check(ip, type)) return `${address} is a cloud metadata address`;
  if (!allowPrivate && PRIVATE.check(ip, type))
    return `${address} is a loopback, private, link-local or otherwise non-public address`;
  return undefined;
}

export interface AddressPolicy {
  allowPrivate: boolean;
  httpsOnly: boolean;
  resolve: Resolver;
}

/** A parsed webhook URL, or a 400 saying why it cannot be one (before any lookup). */
export function parseWebhookUrl(raw: string, policy: Pick<AddressPolicy, "httpsOnly">): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError("VALIDATION_FAILED", "url is not a URL");
  }
  if (url.protocol !== "https:" && (policy.httpsOnly || url.protocol !== "http:"))
    throw new AppError("VALIDATION_FAILED", policy.httpsOnly ? "url must be https" : "url must be http(s)");
  if (url.username || url.password) throw new AppError("VALIDATION_FAILED", "url may not carry credentials");
  return url;
}

const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1");

/**
 * The address a delivery to `url` connects to: the host's addresses, every one of them allowed
 * (a name with one private address among public ones is refused), the first one taken.
 * A 400 (VALIDATION_FAILED) otherwise.
 */
export async function resolveWebhookAddress(url: URL, policy: AddressPolicy): Promise<string> {
  const host = hostOf(url);
  let addresses: string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = await policy.resolve(host);
    } catch {
      throw new AppError("VALIDATION_FAILED", `url: ${host} does not resolve`);
    }
  }
  if (addresses.length === 0) throw new AppError("VALIDATION_FAILED", `url: ${host} does not resolve`);
  for (const address of addresses) {
    const why = forbiddenAddress(address, policy.allowPrivate);
    if (why) throw new AppError("VALIDATION_FAILED", `url: ${host} resolves to ${why}`);
  }
  return addresses[0] as string;
}
