import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { TypeCompiler } from '@sinclair/typebox/compiler';

import {
  type ClientEntry,
  ClientId,
  type ClientsFile,
  type ClientsFileProblem,
  type ClientsFileRules,
  defaultCreateLimitPerMinute,
  defaultEndUserCreateLimitPerMinute,
  defaultEndUserRateLimitPerMinute,
  defaultEndUserTokenAlgorithms,
  defaultRateLimitPerMinute,
  type EndUserTokenAlgorithm,
  validateClientsFile,
} from '../../schemas/clients.js';
import { createExclusive } from '../lib/create-exclusive.js';
import { errorCode } from '../lib/error-code.js';

export type { ClientEntry, ClientsFile } from '../../schemas/clients.js';

/** An authenticated API client. Deliberately carries neither its key nor the key's hash. */
export interface Client {
  id: string;
  /** The file's `name`, or the id when the file has none. */
  name: string;
  /** `whsec_…`, signs this client's webhooks. */
  webhookSecret: string;
  rateLimitPerMinute: number;
  createLimitPerMinute: number;
  /** Lower-cased host names callbacks may target; null → any host (still SSRF-checked). */
  allowedCallbackHosts: string[] | null;
  /** Browser origins (as the `Origin` header sends them) whose pages may call the gateway with this client's credentials. */
  allowedOrigins: string[];
  /** Whose end-user tokens this client accepts (DESIGN §2.7); null → API key only. */
  endUsers: EndUserTokenPolicy | null;
  /** Per end user, over all requests / over creates (DESIGN §2.5). */
  endUserRateLimitPerMinute: number;
  endUserCreateLimitPerMinute: number;
}

/** The issuer of a client's end-user tokens and where its signing keys are published. */
export interface EndUserTokenPolicy {
  issuer: string;
  audience: string;
  jwksUrl: string;
  algorithms: EndUserTokenAlgorithm[];
}

export interface ClientRegistry {
  /** The client whose key is in `Authorization: Bearer <key>`, or undefined (missing, malformed or unknown). */
  authenticate(authorizationHeader: string | undefined): Client | undefined;
  /** True when `candidate` is some client's API key (by hash): lets the logs refuse a key pasted anywhere. */
  isApiKey(candidate: string): boolean;
  get(id: string): Client | undefined;
  all(): Client[];
  /**
   * The client whose `endUsers` names this token issuer and one of these audiences (the token's unverified
   * claims: the caller still verifies the token against that client's keys, issuer and audience).
   */
  forTokenIssuer(issuer: string, audiences: readonly string[]): Client | undefined;
}

const apiKeyPrefix = 'vgk_';
const webhookSecretPrefix = 'whsec_';
/** Far above any real key; bounds the work an absurd header can cause. */
const maxApiKeyLength = 1024;

export const hashApiKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

/** `vgk_` + 32 random bytes, base64url (header- and shell-safe). */
export const generateApiKey = (): string => apiKeyPrefix + randomBytes(32).toString('base64url');

/** `whsec_` + 24 random bytes, standard base64: the format the standardwebhooks libraries decode. */
export const generateWebhookSecret = (): string => webhookSecretPrefix + randomBytes(24).toString('base64');

const clientIdCheck = TypeCompiler.Compile(ClientId);

/** A new client: its API key (to hand over once) and the entry to paste into the clients file. */
export function newClientEntry(options: { id: string; name?: string | undefined }): { apiKey: string; entry: ClientEntry } {
  if (!clientIdCheck.Check(options.id)) {
    throw new Error(`invalid client id ${JSON.stringify(options.id)}: expected 1 to 64 letters, digits, "_" or "-"`);
  }
  if (options.name !== undefined && (options.name.length < 1 || options.name.length > 200)) {
    throw new Error('invalid client name: expected 1 to 200 characters');
  }
  const apiKey = generateApiKey();
  const entry: ClientEntry = {
    id: options.id,
    ...(options.name === undefined ? {} : { name: options.name }),
    apiKeySha256: hashApiKey(apiKey),
    webhookSecret: generateWebhookSecret(),
  };
  return { apiKey, entry };
}

const formatProblem = (problem: ClientsFileProblem): string =>
  problem.path === '' ? problem.message : `${problem.path}: ${problem.message}`;

function toClient(entry: ClientEntry): Client {
  return {
    id: entry.id,
    name: entry.name ?? entry.id,
    webhookSecret: entry.webhookSecret,
    rateLimitPerMinute: entry.rateLimitPerMinute ?? defaultRateLimitPerMinute,
    createLimitPerMinute: entry.createLimitPerMinute ?? defaultCreateLimitPerMinute,
    allowedCallbackHosts:
      entry.allowedCallbackHosts === undefined ? null : [...new Set(entry.allowedCallbackHosts.map((host) => host.toLowerCase()))],
    endUsers:
      entry.endUsers === undefined
        ? null
        : {
            issuer: entry.endUsers.issuer,
            audience: entry.endUsers.audience,
            jwksUrl: entry.endUsers.jwksUrl,
            algorithms: [...(entry.endUsers.algorithms ?? defaultEndUserTokenAlgorithms)],
          },
    endUserRateLimitPerMinute: entry.endUserRateLimitPerMinute ?? defaultEndUserRateLimitPerMinute,
    endUserCreateLimitPerMinute: entry.endUserCreateLimitPerMinute ?? defaultEndUserCreateLimitPerMinute,
    // Serialized as browsers send `Origin`: lower-case scheme and host, default port dropped.
    allowedOrigins: [...new Set((entry.allowedOrigins ?? []).map((origin) => new URL(origin).origin))],
  };
}

const tokenAudienceKey = (issuer: string, audience: string): string => JSON.stringify([issuer, audience]);

/** Builds the registry from a clients file object; throws (one line per problem) when it is invalid. */
export function createClientRegistry(file: ClientsFile, rules: ClientsFileRules = {}): ClientRegistry {
  const validation = validateClientsFile(file, rules);
  if (!validation.ok) throw new Error(validation.problems.map(formatProblem).join('\n'));

  const byId = new Map<string, Client>();
  // Looked up by hash: the registry never holds a key. A Map lookup is not constant-time, but timing can
  // only leak bits of a SHA-256 the caller cannot steer, which says nothing useful about any key.
  const byKeyHash = new Map<string, Client>();
  const byTokenAudience = new Map<string, Client>();
  for (const entry of validation.file.clients) {
    const client = toClient(entry);
    byId.set(client.id, client);
    byKeyHash.set(entry.apiKeySha256, client);
    if (client.endUsers !== null) byTokenAudience.set(tokenAudienceKey(client.endUsers.issuer, client.endUsers.audience), client);
  }

  return {
    authenticate(authorizationHeader) {
      if (authorizationHeader === undefined) return undefined;
      // RFC 9110 §11.4: scheme is case-insensitive, one or more spaces before the token.
      const match = /^Bearer +(\S+)$/i.exec(authorizationHeader.trim());
      const key = match?.[1];
      if (key === undefined || key.length > maxApiKeyLength) return undefined;
      return byKeyHash.get(hashApiKey(key));
    },
    isApiKey: (candidate) => candidate.length <= maxApiKeyLength && byKeyHash.has(hashApiKey(candidate)),
    get: (id) => byId.get(id),
    all: () => [...byId.values()],
    forTokenIssuer(issuer, audiences) {
      // Validation guarantees one client per issuer + audience; a token naming several audiences of different
      // clients is ambiguous and belongs to none.
      const matches = new Set(audiences.flatMap((audience) => byTokenAudience.get(tokenAudienceKey(issuer, audience)) ?? []));
      return matches.size === 1 ? [...matches][0] : undefined;
    },
  };
}

/** `line L, column C` of a character offset, so a JSON error can be located without quoting the file. */
function locate(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`;
}

async function readClientsFile(file: string, rules: ClientsFileRules): Promise<ClientRegistry> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? String(error));
    throw new Error(`Clients file ${file}: cannot read it (${reason})`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // V8's message may quote the surrounding text (secrets included): keep only the position it names, and
    // deliberately not the cause, which would carry that text into the log.
    const position = /position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
    const where = position === undefined ? '' : ` (at ${locate(text, Number(position))})`;
    // eslint-disable-next-line preserve-caught-error -- see above
    throw new Error(`Clients file ${file}: not valid JSON${where}`);
  }
  const validation = validateClientsFile(json, rules);
  if (!validation.ok) {
    throw new Error(validation.problems.map((problem) => `Clients file ${file}: ${formatProblem(problem)}`).join('\n'));
  }
  return createClientRegistry(validation.file, rules);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

function bootstrapBanner(file: string, apiKey: string, webhookSecret: string): string {
  const rule = '='.repeat(78);
  return [
    rule,
    `Created ${file} with one client, "default".`,
    `  API key:        ${apiKey}`,
    `  Webhook secret: ${webhookSecret}`,
    'Copy the API key now: it is not shown again (the file keeps only its SHA-256).',
    'Send it as "Authorization: Bearer <API key>". Add clients with: npm run client:new -- --id ID',
    rule,
  ].join('\n');
}

export interface LoadClientRegistryOptions {
  /** CLIENTS_FILE; null → `<dataDir>/clients.json`, created with one `default` client when missing. */
  clientsFile: string | null;
  dataDir: string;
  /** Receives the one-time bootstrap banner (the only place a key is ever printed). */
  log: (line: string) => void;
  /** JWKS_ALLOW_HTTP */
  allowHttpJwks?: boolean;
}

/** Loads and validates the registry; throws an Error with one line per problem (never quoting secrets). */
export async function loadClientRegistry(options: LoadClientRegistryOptions): Promise<ClientRegistry> {
  const rules: ClientsFileRules = { allowHttpJwks: options.allowHttpJwks === true };
  if (options.clientsFile !== null) return readClientsFile(options.clientsFile, rules);

  const file = path.join(options.dataDir, 'clients.json');
  if (!(await exists(file))) {
    await mkdir(options.dataDir, { recursive: true });
    const { apiKey, entry } = newClientEntry({ id: 'default', name: 'Default client' });
    const created = await createExclusive(file, `${JSON.stringify({ clients: [entry] }, null, 2)}\n`);
    if (created) options.log(bootstrapBanner(file, apiKey, entry.webhookSecret));
  }
  return readClientsFile(file, rules);
}
