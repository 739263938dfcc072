import { hkdfSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { createExclusive } from '../lib/create-exclusive.js';
import { errorCode } from '../lib/error-code.js';

/*
 * GATEWAY_SECRET (DESIGN §5): the one root secret of the gateway. Every key that must be the same on every
 * replica (stream tokens, upstream-callback tokens) is derived from it with HKDF, one key per purpose, so a
 * leaked derived key says nothing about the others. The secret itself is never logged, never in an error.
 *
 * The secret is the UTF-8 bytes of a text: GATEWAY_SECRET as given, or the content of `<dataDir>/gateway-secret`
 * (64 hex characters = 32 random bytes, generated on first start). Copying that file's content into
 * GATEWAY_SECRET on another replica therefore yields exactly the same keys.
 */

/** At least this many characters: 32 random bytes' worth for a random text (e.g. `openssl rand -hex 32` gives 64). */
export const minGatewaySecretLength = 32;

const secretFileName = 'gateway-secret';

/** Why a configured or stored secret text cannot be used, or undefined when it can. Pure; never quotes the text. */
export function gatewaySecretProblem(text: string): string | undefined {
  if (text.length < minGatewaySecretLength) {
    return `is too short (${text.length} characters; expected at least ${minGatewaySecretLength} random characters, e.g. openssl rand -hex 32)`;
  }
  if (/\s/.test(text)) return 'contains whitespace (expected one line of random characters, e.g. openssl rand -hex 32)';
  if (new Set(text).size < 8) return 'is not random (too few distinct characters; use e.g. openssl rand -hex 32)';
  return undefined;
}

/** A 32-byte key for one purpose: HKDF-SHA256 over the secret with info `video-gateway/<purpose>`. Pure. */
export function deriveKey(secret: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `video-gateway/${purpose}`, 32));
}

export interface LoadGatewaySecretOptions {
  /** GATEWAY_SECRET; unset → generated once into `<dataDir>/gateway-secret` and reused. */
  configured?: string | undefined;
  dataDir: string;
  /** Receives one line when a secret is generated (never the secret). */
  log: (line: string) => void;
}

/**
 * The gateway secret: GATEWAY_SECRET when set (validated), else the stored one, generated on first start with
 * mode 0600. Throws an Error with one clear line (never quoting the secret) when it cannot be used.
 */
export async function loadGatewaySecret(options: LoadGatewaySecretOptions): Promise<Buffer> {
  const configured = options.configured?.trim();
  if (configured !== undefined && configured !== '') {
    const problem = gatewaySecretProblem(configured);
    if (problem !== undefined) throw new Error(`GATEWAY_SECRET ${problem}`);
    return Buffer.from(configured, 'utf8');
  }

  const file = path.join(options.dataDir, secretFileName);
  const stored = await readStoredSecret(file);
  if (stored !== undefined) return stored;

  await mkdir(options.dataDir, { recursive: true });
  const created = await createExclusive(file, `${randomBytes(32).toString('hex')}\n`);
  if (created) {
    options.log(
      `Generated a gateway secret into ${file} (mode 0600). Keep it: stream tokens depend on it. ` +
        'With several replicas, set the same GATEWAY_SECRET on each.',
    );
  }
  // Read back what is on disk: when another process won the race, its secret is the one to share.
  const secret = await readStoredSecret(file);
  if (secret === undefined) throw new Error(`Gateway secret ${file}: missing right after it was created`);
  return secret;
}

async function readStoredSecret(file: string): Promise<Buffer | undefined> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw new Error(`Gateway secret ${file}: cannot read it (${errorCode(error) ?? String(error)})`, { cause: error });
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(3, '0');
    throw new Error(`Gateway secret ${file} is readable by group or others (mode ${octal}): run chmod 600 ${file}`);
  }
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (error) {
    const code = errorCode(error);
    throw new Error(`Gateway secret ${file}: cannot read it (${code === 'EACCES' ? 'permission denied' : (code ?? String(error))})`, {
      cause: error,
    });
  }
  const problem = gatewaySecretProblem(text);
  if (problem !== undefined) throw new Error(`Gateway secret ${file} ${problem}; delete it to generate a new one`);
  return Buffer.from(text, 'utf8');
}
