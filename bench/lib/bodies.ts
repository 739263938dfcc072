import { readFile, writeFile } from 'node:fs/promises';

import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** What the baseline serves: the exact bytes a real gateway run answered, and the key it accepts (its SHA-256). */
export const BaselineBodies = Type.Object({
  keySha256: Type.String(),
  /** `GET /videos/:id` by id; `etag` set for terminal videos (then `If-None-Match` → 304, as the gateway does). */
  videos: Type.Record(Type.String(), Type.Object({ body: Type.String(), etag: Type.Union([Type.String(), Type.Null()]) })),
  /** `GET /videos`. */
  list: Type.String(),
});
export type BaselineBodies = Static<typeof BaselineBodies>;

export const writeBodies = (file: string, bodies: BaselineBodies): Promise<void> => writeFile(file, JSON.stringify(bodies));

export async function readBodies(file: string): Promise<BaselineBodies> {
  const json: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (!Value.Check(BaselineBodies, json)) throw new Error(`${file}: not a baseline bodies file`);
  return json;
}
