import { randomBytes } from 'node:crypto';
import { link, open, unlink } from 'node:fs/promises';

import { errorCode } from './error-code.js';

/**
 * Writes `file` only if it does not exist yet, with mode 0600, atomically: the content goes to a private
 * temporary file (opened `wx`) and is hard-linked into place, so a crash never leaves a half-written file and
 * two processes starting at once cannot both create one. Returns false when the file already existed.
 * (The client registry and the gateway secret are both created this way.)
 */
export async function createExclusive(file: string, content: string): Promise<boolean> {
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, file);
    return true;
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}
