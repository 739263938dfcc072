import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler, ValueErrorType } from '@sinclair/typebox/compiler';

/*
 * The clients file (DESIGN §4.3). `expected` is a custom keyword: the wording of a problem with that field.
 * Problems never quote a field's value: the file holds webhook secrets.
 */

export const defaultRateLimitPerMinute = 600;
export const defaultCreateLimitPerMinute = 30;

/** Bytes a webhook secret decodes to (Standard Webhooks recommends 24..64). */
export const webhookSecretBytes = { min: 24, max: 64 } as const;

export const ClientId = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9_-]+$',
  expected: '1 to 64 letters, digits, "_" or "-"',
});

const hostLabel = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const dnsName = `${hostLabel}(?:\\.${hostLabel})*`;
const portNumber = '(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})';

/** A DNS host name (no scheme, port, path or wildcard); IPv4 literals pass and are judged by the SSRF guard. */
export const Hostname = Type.String({
  maxLength: 253,
  pattern: `^${dnsName}$`,
  expected: 'a host name such as hooks.example.com (no scheme, port or path)',
});

/**
 * An `allowedCallbackHosts` entry: a host name (or IP literal, IPv6 in brackets), optionally `*.` for any subdomain,
 * optionally `:port`. Without a port only the scheme's default port is allowed (443 for https, 80 for http).
 */
export const CallbackHost = Type.String({
  maxLength: 260,
  pattern: `^(?:(?:\\*\\.)?${dnsName}|\\[[0-9A-Fa-f:.]+\\])(?::${portNumber})?$`,
  expected: 'a host such as hooks.example.com, *.example.com or hooks.example.com:8443 (no scheme or path)',
});

/** An exact browser origin as the `Origin` header sends it: scheme, host, optional port; no path or trailing slash. */
export const Origin = Type.String({
  maxLength: 300,
  pattern:
    '^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]{1,5})?$',
  expected: 'an origin such as https://app.example.com or http://localhost:5173 (no path, no trailing slash, no wildcard)',
});

export const ClientEntry = Type.Object(
  {
    id: ClientId,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200, expected: 'a string of 1 to 200 characters' })),
    apiKeySha256: Type.String({
      pattern: '^[0-9a-f]{64}$',
      expected: 'the SHA-256 of the API key as 64 lowercase hex characters (npm run client:new prints one)',
    }),
    webhookSecret: Type.String({
      // Canonical padded base64, as the standardwebhooks libraries decode it; the byte count is checked in code.
      pattern: '^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$',
      expected: `"whsec_" then base64 of ${webhookSecretBytes.min} to ${webhookSecretBytes.max} random bytes (npm run client:new prints one)`,
    }),
    rateLimitPerMinute: Type.Optional(
      Type.Integer({ minimum: 1, default: defaultRateLimitPerMinute, expected: 'an integer of at least 1' }),
    ),
    createLimitPerMinute: Type.Optional(
      Type.Integer({ minimum: 1, default: defaultCreateLimitPerMinute, expected: 'an integer of at least 1' }),
    ),
    allowedCallbackHosts: Type.Optional(Type.Array(CallbackHost, { maxItems: 1000, expected: 'an array of host names' })),
    allowedOrigins: Type.Optional(Type.Array(Origin, { maxItems: 100, expected: 'an array of origins' })),
  },
  { additionalProperties: false, expected: 'an object with id, apiKeySha256 and webhookSecret' },
);
export type ClientEntry = Static<typeof ClientEntry>;

export const ClientsFile = Type.Object(
  { clients: Type.Array(ClientEntry, { expected: 'an array of clients' }) },
  { additionalProperties: false, expected: 'an object { "clients": [ … ] }' },
);
export type ClientsFile = Static<typeof ClientsFile>;

export interface ClientsFileProblem {
  /** JSON pointer into the file, e.g. `/clients/2/webhookSecret`; `` for the whole document. */
  path: string;
  message: string;
}

export type ClientsFileValidation = { ok: true; file: ClientsFile } | { ok: false; problems: ClientsFileProblem[] };

const clientsFileCheck = TypeCompiler.Compile(ClientsFile);

const expectedOf = (schema: { [key: string]: unknown }): string | undefined =>
  typeof schema['expected'] === 'string' ? schema['expected'] : undefined;

/** Shape (schema) first, then what a schema cannot say: secret length, unique ids, unique key hashes. */
export function validateClientsFile(value: unknown): ClientsFileValidation {
  const problems: ClientsFileProblem[] = [];
  const seen = new Set<string>();
  for (const error of clientsFileCheck.Errors(value)) {
    if (seen.has(error.path)) continue; // one line per field
    seen.add(error.path);
    const expected = expectedOf(error.schema);
    let message: string;
    if (error.type === ValueErrorType.ObjectRequiredProperty) {
      message = `is missing${expected === undefined ? '' : ` (expected ${expected})`}`;
    } else if (error.type === ValueErrorType.ObjectAdditionalProperties) {
      const known = Object.keys((error.schema as { properties?: object }).properties ?? {}).join(', ');
      message = `is not a known field (known fields: ${known})`;
    } else {
      message = expected === undefined ? error.message : `expected ${expected}`;
    }
    problems.push({ path: error.path, message });
  }
  if (problems.length > 0 || !clientsFileCheck.Check(value)) return { ok: false, problems };

  const idAt = new Map<string, number>();
  const hashAt = new Map<string, number>();
  value.clients.forEach((client, index) => {
    const bytes = Buffer.from(client.webhookSecret.slice('whsec_'.length), 'base64').length;
    if (bytes < webhookSecretBytes.min || bytes > webhookSecretBytes.max) {
      problems.push({
        path: `/clients/${index}/webhookSecret`,
        message: `decodes to ${bytes} bytes (expected ${webhookSecretBytes.min} to ${webhookSecretBytes.max}; npm run client:new prints one)`,
      });
    }
    const sameId = idAt.get(client.id);
    if (sameId === undefined) idAt.set(client.id, index);
    else problems.push({ path: `/clients/${index}/id`, message: `duplicate id "${client.id}" (also at /clients/${sameId}/id)` });
    const sameKey = hashAt.get(client.apiKeySha256);
    if (sameKey === undefined) hashAt.set(client.apiKeySha256, index);
    else
      problems.push({
        path: `/clients/${index}/apiKeySha256`,
        message: `same API key as /clients/${sameKey} (every client needs its own key)`,
      });
  });
  return problems.length === 0 ? { ok: true, file: value } : { ok: false, problems };
}
