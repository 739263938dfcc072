/**
 * The one secret scrubber (issue 13 item 6), pure: the upstream mapping cleans what the upstream says with it, the
 * logger scrubs every line and every logged URL with it, the request-id generator refuses ids it flags.
 *
 * Patterns alone miss secrets of other shapes (an ElkAPI key `elk-prod-…`, a client key without the `vgk_`
 * prefix), so it knows the exact configured secrets and, through the registry, which strings are client keys
 * (the registry holds only their hashes). A value standing alone where a credential could be pasted — a request
 * id, a query value — is also refused when it merely looks like a bearer token.
 */
export const redactedText = '[redacted]';

/** Exact secrets shorter than this are not treated as secrets (they would redact ordinary words). */
const minimumSecretLength = 8;

export interface SecretScrubberOptions {
  /** Exact secrets, whatever their shape: the ElkAPI key, webhook secrets. */
  exact?: readonly string[];
  /** True when the string is one of the registry's client keys (checked by hash). */
  isClientKey?: (candidate: string) => boolean;
}

export interface SecretScrubber {
  /**
   * `text` with every exact secret (as is, JSON-escaped or percent-encoded) and every credential-shaped token
   * (`vgk_…`, `whsec_…`, `vst_…`, `Bearer …`, `Basic …`) replaced by `[redacted]`. The replacement holds no quote or
   * backslash, so a serialized JSON line stays valid JSON.
   */
  scrub: (text: string) => string;
  /** True when `value`, standing alone, is or contains a secret, is a client key, or looks like a bearer token. */
  isSecret: (value: string) => boolean;
  /** A path with query, each query value that is a secret — or sits under a credential's name — redacted. */
  redactUrl: (url: string) => string;
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** How a string appears inside a JSON string. */
const asJsonText = (text: string): string => JSON.stringify(text).slice(1, -1);

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A token of 20+ RFC 6750 token68 characters mixing lower case, upper case and digits: the shape of random keys
 * (base64/base64url) and JWTs. UUIDs, ULIDs, `mobile-77`-style ids and words are not.
 */
export function looksLikeBearerToken(value: string): boolean {
  if (value.length < 20 || !/^[A-Za-z0-9._~+/-]+=*$/.test(value) || uuidPattern.test(value)) return false;
  return /[a-z]/.test(value) && /[A-Z]/.test(value) && /[0-9]/.test(value);
}

/** Query parameters whose value is a credential whatever it looks like. */
const credentialParameter =
  /^(?:api[_-]?key|apikey|key|token|access[_-]?token|id[_-]?token|auth|authorization|secret|password|passwd|signature|sig)$/i;

function decoded(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}

export function createSecretScrubber(options: SecretScrubberOptions = {}): SecretScrubber {
  const exact = [...new Set((options.exact ?? []).filter((secret) => secret.length >= minimumSecretLength))];
  const exactForms = [...new Set(exact.flatMap((secret) => [secret, asJsonText(secret), encodeURIComponent(secret)]))]
    .sort((a, b) => b.length - a.length)
    .map(escapeRegExp);
  const shapes = [
    '\\bvgk_[A-Za-z0-9_-]{8,}',
    '\\bwhsec_[A-Za-z0-9+/=]{8,}',
    // Stream tokens travel in a query string (`?token=vst_…`), so they reach request logs.
    '\\bvst_[A-Za-z0-9_-]{8,}(?:\\.[A-Za-z0-9_-]*)?',
    // Upstream callback tokens (a logged URL or callback_url): the URL is the credential.
    '(?<=/upstream/callbacks/)[A-Za-z0-9_-]{8,}',
    // RFC 6750 token68 characters, so prose such as "Bearer <key>" is left alone.
    '\\b(?:Bearer|Basic)\\s+[A-Za-z0-9._~+/-]+=*',
  ];
  const credential = new RegExp([...exactForms, ...shapes].join('|'), 'gi');
  const isClientKey = options.isClientKey ?? (() => false);

  const scrub = (text: string): string => text.replace(credential, redactedText);
  const isSecret = (value: string): boolean => scrub(value) !== value || looksLikeBearerToken(value) || isClientKey(value);

  return {
    scrub,
    isSecret,
    redactUrl: (url) => {
      const queryStart = url.indexOf('?');
      if (queryStart === -1) return scrub(url);
      const query = url
        .slice(queryStart + 1)
        .split('&')
        .map((pair) => {
          const equals = pair.indexOf('=');
          if (equals === -1) return isSecret(decoded(pair)) ? redactedText : pair;
          const value = pair.slice(equals + 1);
          const secret = value !== '' && (credentialParameter.test(decoded(pair.slice(0, equals))) || isSecret(decoded(value)));
          return secret ? `${pair.slice(0, equals)}=${redactedText}` : pair;
        })
        .join('&');
      return scrub(`${url.slice(0, queryStart)}?${query}`);
    },
  };
}
