import type { Client, ClientRegistry } from './clients.js';
import { type EndUserTokenVerifier, looksLikeJwt } from './end-user-tokens.js';

/*
 * Who is calling (DESIGN §2, §2.7): an app server (its client API key: every video of the client) or an end user
 * (a JWT of the client's identity provider: only its own videos). Domain code decides ownership with `owns`.
 */

export type Caller =
  | { kind: 'app_server'; client: Client; endUserId: null }
  | { kind: 'end_user'; client: Client; /** The token's `sub`. */ endUserId: string };

export const appServer = (client: Client): Caller => ({ kind: 'app_server', client, endUserId: null });
export const endUser = (client: Client, endUserId: string): Caller => ({ kind: 'end_user', client, endUserId });

/** A video (or anything owned) is the caller's: same client and, for an end user, the same end user. */
export const owns = (caller: Caller, owned: { clientId: string; endUserId: string | null }): boolean =>
  owned.clientId === caller.client.id && (caller.kind === 'app_server' || owned.endUserId === caller.endUserId);

export type Authentication = { ok: true; caller: Caller } | { ok: false; detail: string };

export type Authenticator = (authorizationHeader: string | undefined) => Promise<Authentication>;

const sendCredential = 'Send a client API key or an end-user token as `Authorization: Bearer <credential>`.';

/** API keys and end-user JWTs behind one `Authorization: Bearer` header. Never throws; never echoes the credential. */
export function createAuthenticator(options: {
  clients: Pick<ClientRegistry, 'authenticate'>;
  endUserTokens: EndUserTokenVerifier;
}): Authenticator {
  return async (header) => {
    if (header === undefined) return { ok: false, detail: `No credential. ${sendCredential}` };
    // RFC 9110 §11.4: scheme is case-insensitive, one or more spaces before the token.
    const token = /^Bearer +(\S+)$/i.exec(header.trim())?.[1];
    if (token === undefined) return { ok: false, detail: `The Authorization header is not a bearer credential. ${sendCredential}` };
    if (looksLikeJwt(token) || token.length > 1024) {
      const verified = await options.endUserTokens.verify(token);
      return verified.ok ? { ok: true, caller: endUser(verified.client, verified.endUserId) } : verified;
    }
    const client = options.clients.authenticate(header);
    return client === undefined ? { ok: false, detail: `Unknown API key. ${sendCredential}` } : { ok: true, caller: appServer(client) };
  };
}
