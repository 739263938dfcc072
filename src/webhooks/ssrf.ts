/**
 * Network-edge SSRF guard for webhook deliveries (DESIGN §4.4).
 *
 * Two layers, because neither is enough alone:
 * - `guardedLookup` checks EVERY address a callback host resolves to, at connect time, and hands exactly those
 *   addresses to the socket — so DNS rebinding (public at request time, 10.0.0.5 at delivery time) cannot
 *   reach internal addresses, and there is no gap between "checked" and "connected".
 * - `createGuardedConnector` refuses forbidden IP-literal hosts itself: undici's connector calls
 *   `net.connect` / `tls.connect` with `host: hostname`, and Node skips `lookup` entirely when the host is
 *   already an IP address, so `http://127.0.0.1/` would otherwise never meet the lookup check.
 *
 * Addresses are parsed and canonicalised with Node's own parsers (WHATWG URL, `net.isIPv6`), i.e. exactly as the
 * URL and the socket layer will read them, then classified with `ipaddr.js` CIDR matching rather than
 * `node:net` BlockList: BlockList can match IPv4-mapped addresses against IPv4 rules, but it cannot expose the
 * IPv4 address embedded in NAT64 (64:ff9b::/96) or 6to4 (2002::/16) addresses, which is needed here. The ranges
 * are spelled out below (IANA special-purpose registries) instead of relying on the library's range names, so
 * the policy is reviewable in one place.
 */
import dns from 'node:dns';
import net from 'node:net';

import ipaddr from 'ipaddr.js';
import { Agent, buildConnector } from 'undici';

import { errorCode } from '../lib/error-code.js';

export const FORBIDDEN_ADDRESS_ERROR_CODE = 'ERR_WEBHOOK_FORBIDDEN_ADDRESS';

/** Raised (through the socket, so undici reports it as the request's error) when a callback host is forbidden. */
export class ForbiddenAddressError extends Error {
  readonly code = FORBIDDEN_ADDRESS_ERROR_CODE;
  constructor(
    readonly hostname: string,
    readonly address: string,
    message: string,
  ) {
    super(message);
    this.name = 'ForbiddenAddressError';
  }
}

export function isForbiddenAddressError(error: unknown): error is ForbiddenAddressError {
  return error instanceof Error && errorCode(error) === FORBIDDEN_ADDRESS_ERROR_CODE;
}

// ---------------------------------------------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------------------------------------------

/** IPv4 ranges that are never a legitimate public webhook receiver. */
const FORBIDDEN_IPV4_RANGES = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8', // private (RFC 1918)
  '100.64.0.0/10', // carrier-grade NAT shared space (RFC 6598)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, incl. cloud metadata 169.254.169.254
  '172.16.0.0/12', // private (RFC 1918)
  '192.0.0.0/24', // IETF protocol assignments (DS-Lite, NAT64 discovery, …)
  '192.0.2.0/24', // documentation TEST-NET-1
  '192.88.99.0/24', // deprecated 6to4 relay anycast
  '192.168.0.0/16', // private (RFC 1918)
  '198.18.0.0/15', // benchmarking (RFC 2544)
  '198.51.100.0/24', // documentation TEST-NET-2
  '203.0.113.0/24', // documentation TEST-NET-3
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, incl. broadcast 255.255.255.255
].map((cidr) => ipaddr.IPv4.parseCIDR(cidr));

/** Only global unicast (2000::/3) can be public; everything outside it (::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8, …) is refused. */
const IPV6_GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR('2000::/3');

/** Parts of 2000::/3 that are still not public receivers. */
const FORBIDDEN_IPV6_GLOBAL_RANGES = [
  '2001::/23', // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID, …
  '2001:db8::/32', // documentation
  '3fff::/20', // documentation (RFC 9637)
].map((cidr) => ipaddr.IPv6.parseCIDR(cidr));

// IPv6 forms that carry an IPv4 address: they are exactly as safe as the IPv4 address inside them.
const IPV4_MAPPED = ipaddr.IPv6.parseCIDR('::ffff:0:0/96');
/** NAT64 well-known prefix: on IPv6-only hosts with DNS64, every public IPv4 receiver shows up like this. */
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');
const SIX_TO_FOUR = ipaddr.IPv6.parseCIDR('2002::/16');

function isForbiddenIPv4(address: ipaddr.IPv4): boolean {
  return FORBIDDEN_IPV4_RANGES.some((range) => address.match(range));
}

function ipv4FromBytes(bytes: number[]): ipaddr.IPv4 {
  return new ipaddr.IPv4(bytes);
}

function isForbiddenIPv6(address: ipaddr.IPv6): boolean {
  const bytes = address.toByteArray();
  if (address.match(IPV4_MAPPED) || address.match(NAT64_WELL_KNOWN)) {
    return isForbiddenIPv4(ipv4FromBytes(bytes.slice(12, 16)));
  }
  if (address.match(SIX_TO_FOUR)) {
    return isForbiddenIPv4(ipv4FromBytes(bytes.slice(2, 6)));
  }
  // IPv4-compatible (::a.b.c.d, deprecated), IPv4-translated (::ffff:0:a.b.c.d), local-use NAT64 (64:ff9b:1::/48,
  // operator-defined embedding) all fall outside 2000::/3 and are refused outright.
  if (!address.match(IPV6_GLOBAL_UNICAST)) return true;
  return FORBIDDEN_IPV6_GLOBAL_RANGES.some((range) => address.match(range));
}

/**
 * True for any address that is not plainly public unicast: private, loopback, link-local, unspecified,
 * multicast, broadcast, CGNAT, benchmarking, documentation, reserved, ULA, site-local, Teredo, and IPv6 forms
 * embedding a forbidden IPv4 address. Anything that does not parse as an IP address is forbidden too (fail closed).
 */
export function isForbiddenAddress(address: string): boolean {
  const parsed = parseAddress(address);
  if (parsed === null) return true;
  if (parsed.ip.kind() === 'ipv4') return isForbiddenIPv4(parsed.ip as ipaddr.IPv4);
  // A zone id ("fe80::1%eth0") only exists for scoped, non-global addresses.
  return parsed.zoned || isForbiddenIPv6(parsed.ip as ipaddr.IPv6);
}

/**
 * The canonical address if `hostname` is an IP literal, else null (a DNS name).
 *
 * WHATWG URL parsing already rewrites every IPv4 spelling (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) to a
 * dotted quad and brackets IPv6 (`[::ffff:7f00:1]`), but this also accepts those raw spellings, bracketed or not,
 * with a trailing dot, or with a zone id (`fe80::1%eth0`, `[fe80::1%25eth0]`), so callers never depend on the
 * input having gone through `new URL` first. IPv4 comes back dotted-quad, IPv6 compressed all-hex (zone kept).
 */
export function parseIpLiteralHost(hostname: string): string | null {
  return parseAddress(hostname)?.canonical ?? null;
}

interface ParsedAddress {
  canonical: string;
  ip: ipaddr.IPv4 | ipaddr.IPv6;
  zoned: boolean;
}

/** Characters an IPv4 spelling can use (decimal, octal, hex parts); anything else is a DNS name or junk. */
const IPV4_SPELLING = /^[0-9a-fx.]+$/i;
const ZONE_ID = /^[\w.-]+$/;

function parseAddress(hostname: string): ParsedAddress | null {
  const host = hostname.trim();
  if (host.startsWith('[') && host.endsWith(']')) return parseIPv6(host.slice(1, -1).replace(/%25/i, '%'));
  if (host.includes(':')) return parseIPv6(host);
  return parseIPv4(host);
}

// Both parsers canonicalise through WHATWG URL (the same parser that produces `url.hostname`) rather than
// ipaddr.js's own: ipaddr.js reads "::8.8.8.8" as IPv4-MAPPED (::ffff:808:808) where RFC 4291, the OS and WHATWG
// read it as IPv4-compatible (::808:808), and it accepts "0177" in embedded dotted parts as decimal. ipaddr.js
// then only ever sees the canonical forms.
function parseIPv6(text: string): ParsedAddress | null {
  const zoneAt = text.indexOf('%');
  const address = zoneAt === -1 ? text : text.slice(0, zoneAt);
  const zone = zoneAt === -1 ? null : text.slice(zoneAt + 1);
  if (!net.isIPv6(address) || (zone !== null && !ZONE_ID.test(zone))) return null;
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  return {
    canonical: zone === null ? canonical : `${canonical}%${zone}`,
    ip: ipaddr.IPv6.parse(canonical),
    zoned: zone !== null,
  };
}

function parseIPv4(text: string): ParsedAddress | null {
  if (!IPV4_SPELLING.test(text)) return null;
  let hostname: string;
  try {
    // inet_aton spellings (1-4 parts, decimal/octal/hex, trailing dot) exactly as a URL host would read them.
    hostname = new URL(`http://${text}/`).hostname;
  } catch {
    return null;
  }
  return net.isIPv4(hostname) ? { canonical: hostname, ip: ipaddr.IPv4.parse(hostname), zoned: false } : null;
}

// ---------------------------------------------------------------------------------------------------------------
// Connect-time enforcement
// ---------------------------------------------------------------------------------------------------------------

export interface GuardOptions {
  /** Lifts every address check (WEBHOOK_ALLOW_PRIVATE_NETWORKS=true): local development and tests only. */
  allowPrivate: boolean;
}

export type ResolveAll = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (error: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

export interface GuardedLookupOptions extends GuardOptions {
  /** The resolver; `dns.lookup` unless a test substitutes one. Always called with `all: true`. */
  resolveAll?: ResolveAll;
}

const systemResolveAll: ResolveAll = (hostname, options, callback) => dns.lookup(hostname, options, callback);

/**
 * What a partner reads when its host resolves to a forbidden address — or to nothing at all. The address is never
 * named (an internal name would reveal the private IP it points to) and unknown names read the same as blocked
 * ones, so the delivery log cannot be used to map internal DNS. The error object keeps both for operators.
 */
export const UNREACHABLE_HOST_MESSAGE = 'callback host does not resolve to an allowed address';

function resolvesToForbiddenError(hostname: string, address: string): ForbiddenAddressError {
  return new ForbiddenAddressError(hostname, address, UNREACHABLE_HOST_MESSAGE);
}

/**
 * A `dns.lookup`-compatible function (the `lookup` option of `net.connect`) that resolves ALL addresses of the
 * host and fails with `ERR_WEBHOOK_FORBIDDEN_ADDRESS` if any one is forbidden — refusing the host as a whole, so
 * a record set mixing public and private addresses cannot be used to reach the private one on a retry or
 * happy-eyeballs fallback. Honours `options.all` (Node's autoSelectFamily asks for all addresses, plain
 * connects for one).
 */
export function guardedLookup(options: GuardedLookupOptions): net.LookupFunction {
  const resolveAll = options.resolveAll ?? systemResolveAll;
  return (hostname, lookupOptions, callback) => {
    const wantsAll = lookupOptions.all === true;
    const failWith = (error: NodeJS.ErrnoException): void => callback(error, wantsAll ? [] : '');

    resolveAll(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
      if (error) return failWith(error);
      if (!options.allowPrivate) {
        const forbidden = addresses.find((entry) => isForbiddenAddress(entry.address));
        if (forbidden) return failWith(resolvesToForbiddenError(hostname, forbidden.address));
      }
      const first = addresses[0];
      if (first === undefined) {
        return failWith(Object.assign(new Error(UNREACHABLE_HOST_MESSAGE), { code: 'ENOTFOUND', hostname }));
      }
      if (wantsAll) return callback(null, addresses);
      return callback(null, first.address, first.family);
    });
  };
}

export interface GuardedConnectorOptions extends GuardOptions {
  /** TCP + TLS connect timeout. */
  timeoutMs: number;
}

/**
 * An undici connector (`connect` option of Agent/Pool/Client) that applies `guardedLookup` to DNS names and
 * refuses forbidden IP-literal hosts before any socket is opened.
 */
function createGuardedConnector(options: GuardedConnectorOptions): buildConnector.connector {
  const connect = buildConnector({
    lookup: guardedLookup({ allowPrivate: options.allowPrivate }),
    timeout: options.timeoutMs,
  });
  return (connectOptions, callback) => {
    // undici hands IPv6 hosts over without brackets; parseIpLiteralHost accepts either form.
    const literal = options.allowPrivate ? null : parseIpLiteralHost(connectOptions.hostname);
    if (literal !== null && isForbiddenAddress(literal)) {
      const error = new ForbiddenAddressError(connectOptions.hostname, literal, 'callback host is a forbidden address');
      // Connectors answer asynchronously (as the built-in one does); keep that contract.
      process.nextTick(() => callback(error, null));
      return;
    }
    connect(connectOptions, callback);
  };
}

export interface GuardedAgentOptions extends GuardedConnectorOptions {
  /** Max sockets per origin: the per-receiver-host concurrency cap (DESIGN §3). Unlimited when unset. */
  connections?: number;
}

/**
 * The dispatcher for webhook deliveries. It follows no redirects: undici 7 Agents never do unless composed
 * with the redirect interceptor (which we don't), and a 3xx is a failed attempt (DESIGN §3). Headers and body
 * timeouts are capped at the attempt timeout too, so a receiver that accepts the connection and then stalls
 * cannot hold a socket beyond it (callers should still abort the whole attempt with their own signal).
 */
export function createGuardedAgent(options: GuardedAgentOptions): Agent {
  return new Agent({
    connect: createGuardedConnector({ allowPrivate: options.allowPrivate, timeoutMs: options.timeoutMs }),
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    ...(options.connections === undefined ? {} : { connections: options.connections }),
  });
}
