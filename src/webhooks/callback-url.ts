/**
 * Request-time validation of a video's `callbackUrl` (DESIGN §4.4). This refuses what can be refused from the URL
 * alone; addresses that DNS names resolve to are checked again at every delivery by the guarded connector
 * (./ssrf.ts), which is the check that actually stops SSRF — this one gives clients an early, clear answer.
 */
import { domainToASCII } from 'node:url';

import { isForbiddenAddress, parseIpLiteralHost } from './ssrf.js';

const MAX_CALLBACK_URL_LENGTH = 2048;

export interface CallbackUrlPolicy {
  /** WEBHOOK_ALLOW_HTTP: accept `http:` as well as `https:` (development only). */
  allowHttp: boolean;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: accept private/reserved IP literals and local host names (development only). */
  allowPrivateNetworks: boolean;
  /** The client's `allowedCallbackHosts`; null means any public host. */
  allowedHosts: readonly string[] | null;
}

export type CallbackUrlCheck = { ok: true; url: URL } | { ok: false; reason: string };

/**
 * Suffixes that never name a public host: reserved for loopback or local use (RFC 6761 `localhost`, RFC 6762
 * `local`, RFC 8375 `home.arpa`, ICANN's reserved `internal`) or permanently withheld from delegation (`corp`,
 * `home`). Names like `metadata.google.internal` land here.
 */
const LOCAL_NAME_SUFFIXES = ['localhost', 'local', 'internal', 'home.arpa', 'corp', 'home'];

/**
 * Checks a callback URL against the gateway's and the client's policy. On success `url` is the WHATWG-parsed URL
 * (host lower-cased, IPv4 spellings normalised), which is what should be stored and used for delivery.
 *
 * A fragment is accepted and kept (it is part of what the client sent and echoes back), but it is never sent:
 * HTTP request targets carry only path and query.
 */
export function checkCallbackUrl(input: string, policy: CallbackUrlPolicy): CallbackUrlCheck {
  if (input.length > MAX_CALLBACK_URL_LENGTH) return refuse(`must be at most ${MAX_CALLBACK_URL_LENGTH} characters`);

  let url: URL;
  try {
    url = new URL(input); // no base: relative references throw
  } catch {
    return refuse('must be an absolute URL');
  }
  // Normalisation (percent-encoding) can lengthen the URL past what we promise to store.
  if (url.href.length > MAX_CALLBACK_URL_LENGTH) return refuse(`must be at most ${MAX_CALLBACK_URL_LENGTH} characters`);

  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    return refuse(policy.allowHttp ? 'must use https or http' : 'must use https');
  }
  if (url.username !== '' || url.password !== '') return refuse('must not contain credentials');

  const hostProblem = publicHostProblem(url.hostname, policy.allowPrivateNetworks);
  if (hostProblem !== null) return refuse(hostProblem);

  if (policy.allowedHosts !== null && !isHostAllowed(url.hostname, policy.allowedHosts, portOf(url))) {
    return refuse("host is not in this client's allowedCallbackHosts");
  }
  return { ok: true, url };
}

/**
 * Request-time check of a keyframe `imageUrl`. The upstream fetches it on the gateway's behalf (and bills the
 * generation), so it gets the callback URL's address rules: https, no credentials, no private, loopback,
 * link-local, metadata or reserved addresses, no local host names. `allowedCallbackHosts` does not apply.
 */
export function checkImageUrl(input: string, allowPrivateNetworks: boolean): CallbackUrlCheck {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return refuse('must be an absolute URL');
  }
  if (url.protocol !== 'https:') return refuse('must use https');
  if (url.username !== '' || url.password !== '') return refuse('must not contain credentials');
  const hostProblem = publicHostProblem(url.hostname, allowPrivateNetworks);
  return hostProblem === null ? { ok: true, url } : refuse(hostProblem);
}

function refuse(reason: string): CallbackUrlCheck {
  return { ok: false, reason };
}

/** Why `hostname` (as WHATWG URL gives it) cannot be a public receiver, or null when it may be. */
function publicHostProblem(hostname: string, allowPrivateNetworks: boolean): string | null {
  if (allowPrivateNetworks) return null;

  const ipLiteral = parseIpLiteralHost(hostname);
  if (ipLiteral !== null) {
    return isForbiddenAddress(ipLiteral) ? 'points to a private or reserved address' : null;
  }

  const name = withoutTrailingDot(hostname.toLowerCase());
  if (LOCAL_NAME_SUFFIXES.some((suffix) => name === suffix || name.endsWith(`.${suffix}`))) {
    return 'points to a local or internal host name';
  }
  // "intranet", "printer": resolved through search domains to something internal, never a public name.
  if (!name.includes('.')) return 'host must be a fully qualified domain name';
  return null;
}

/** The port a URL connects to, and whether it is its scheme's default (WHATWG URL leaves `port` empty then). */
export interface UrlPort {
  port: number;
  isDefault: boolean;
}

const portOf = (url: URL): UrlPort =>
  url.port === '' ? { port: url.protocol === 'http:' ? 80 : 443, isDefault: true } : { port: Number(url.port), isDefault: false };

/** `host`, `*.host`, `[v6]`, each optionally `:port` → its host part and port (null: the scheme's default). */
function splitEntry(entry: string): { host: string; port: number | null } {
  const trimmed = entry.trim();
  const portStart = trimmed.startsWith('[') ? trimmed.indexOf(']:') + 1 : trimmed.lastIndexOf(':');
  if (portStart <= 0) return { host: trimmed, port: null };
  return { host: trimmed.slice(0, portStart), port: Number(trimmed.slice(portStart + 1)) };
}

/**
 * Whether `hostname` on `port` matches an `allowedCallbackHosts` entry: exact, case-insensitive, trailing dot
 * ignored, IDN entries compared in their ASCII (punycode) form, IP entries in canonical form; `*.example.com`
 * matches any subdomain of example.com but not example.com itself (list both to allow both). An entry without a
 * port allows only the scheme's default port (443 for https; 80 for http, where http is allowed at all);
 * `host:8443` allows that port only.
 */
export function isHostAllowed(
  hostname: string,
  allowedHosts: readonly string[],
  { port, isDefault }: UrlPort = { port: 443, isDefault: true },
): boolean {
  const host = normaliseHost(hostname);
  if (host === null) return false;
  return allowedHosts.some((entry) => {
    const { host: entryHost, port: entryPort } = splitEntry(entry);
    if (entryPort === null ? !isDefault : entryPort !== port) return false;
    if (entryHost.startsWith('*.')) {
      const suffix = normaliseHost(entryHost.slice(2));
      return suffix !== null && host.endsWith(`.${suffix}`);
    }
    return normaliseHost(entryHost) === host;
  });
}

function normaliseHost(host: string): string | null {
  const ipLiteral = parseIpLiteralHost(host);
  if (ipLiteral !== null) return ipLiteral;
  const ascii = domainToASCII(withoutTrailingDot(host.trim()));
  return ascii === '' ? null : ascii.toLowerCase();
}

function withoutTrailingDot(host: string): string {
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
