// Lists of addresses and CIDR blocks (TRUSTED_PROXIES, ADMIN_IP_ALLOWLIST, a usage client's
// allowlist), checked with Node's BlockList. An IPv4 address that arrives IPv4-mapped
// (::ffff:203.0.113.7, as a dual-stack socket reports it) counts as the IPv4 address.
import { BlockList, isIP } from "node:net";
import { z } from "zod";

export interface AddressList {
  /** The entries as written: `203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`. */
  readonly entries: readonly string[];
  contains(address: string): boolean;
}

const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/**
 * An IPv4 or IPv6 address as Postgres' `inet` stores it: no zone (`fe80::1%eth0`, which Node's
 * isIP accepts and Postgres refuses), at most 45 characters.
 */
export const isStorableAddress = (s: string): boolean => s.length <= 45 && !s.includes("%") && isIP(s) !== 0;

/** Why `entry` is not an address or a CIDR block, or undefined when it is one. */
export function cidrProblem(entry: string): string | undefined {
  const [address = "", bits, extra] = entry.split("/");
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return `${entry} is not an IP address or CIDR block`;
  if (bits === undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `${entry}: the prefix length must be 0-${max}`;
  return undefined;
}

/** A list of valid entries (see cidrProblem). */
export function addressList(entries: readonly string[]): AddressList {
  const blocks = new BlockList();
  for (const entry of entries) {
    const [address = "", bits] = entry.split("/");
    const type = isIP(address) === 4 ? "ipv4" : "ipv6";
    if (bits === undefined) blocks.addAddress(address, type);
    else blocks.addSubnet(address, Number(bits), type);
  }
  return {
    entries,
    contains(address) {
      const v4 = MAPPED_V4.exec(address)?.[1] ?? address;
      const family = isIP(v4);
      if (family === 0) return false;
      return blocks.check(v4, family === 4 ? "ipv4" : "ipv6");
    },
  };
}

/** A config variable holding a comma-separated list of addresses and CIDR blocks. */
export const addressListConfig = () =>
  z.string().transform((raw, ctx) => {
    const entries = raw
      .split(",")
      .map((e) => e.trim())
      .filter((e) => e !== "");
    const problems = entries.map(cidrProblem).filter((p) => p !== undefined);
    if (problems.length > 0) {
      ctx.addIssue({ code: "custom", message: problems.join("; ") });
      return z.NEVER;
    }
    return addressList(entries);
  });
