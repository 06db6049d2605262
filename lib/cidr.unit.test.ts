import { describe, expect, it } from "vitest";
import { addressList, addressListConfig, cidrProblem } from "./cidr.js";

describe("address lists", () => {
  it("match addresses and CIDR blocks, IPv4, IPv4-mapped IPv6 and IPv6", () => {
    const list = addressList(["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"]);
    expect(list.contains("203.0.113.200")).toBe(true);
    expect(list.contains("::ffff:203.0.113.9")).toBe(true);
    expect(list.contains("203.0.114.1")).toBe(false);
    expect(list.contains("198.51.100.7")).toBe(true);
    expect(list.contains("198.51.100.8")).toBe(false);
    expect(list.contains("2001:db8:1::5")).toBe(true);
    expect(list.contains("2001:db9::5")).toBe(false);
    expect(list.contains("unknown")).toBe(false);
    expect(addressList([]).contains("203.0.113.1")).toBe(false);
  });

  it("refuse what is not an address or a block, naming it", () => {
    for (const bad of [
      "203.0.113.0/33",
      "2001:db8::/129",
      "example.com",
      "1.2.3.4/24/1",
      "1.2.3/24",
      "10.0.0.0/x",
    ])
      expect(cidrProblem(bad), bad).toMatch(/./);
    expect(cidrProblem("10.0.0.0/8")).toBeUndefined();
    expect(addressListConfig().safeParse("10.0.0.0/8, nope").success).toBe(false);
    expect(addressListConfig().parse(" 10.0.0.0/8 ,, ::1 ").entries).toEqual(["10.0.0.0/8", "::1"]);
  });
});
