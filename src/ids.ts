import { randomBytes } from 'node:crypto';

import type { Clock } from './clock.js';

// Crockford base32, as used by ULID. Hand-written (a dozen lines) rather than a dependency so the
// clock stays injectable and ids stay time-sortable with our own prefixes.
const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

// One OpenSSL call per 4 KiB instead of one per id: a request id is generated for every request, and a
// 10-byte randomBytes() call each time showed up as ~8 % of a cached GET's CPU.
const randomPoolSize = 4096;
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

function pooledRandomBytes(size: number): Uint8Array {
  if (randomOffset + size > randomPool.length) {
    randomPool = randomBytes(randomPoolSize);
    randomOffset = 0;
  }
  const bytes = randomPool.subarray(randomOffset, randomOffset + size);
  randomOffset += size;
  return bytes;
}

export function ulid(timeMs: number, random: Uint8Array = pooledRandomBytes(10)): string {
  let time = '';
  let t = Math.max(0, Math.floor(timeMs));
  for (let i = 0; i < 10; i++) {
    time = alphabet[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let bits = 0;
  let value = 0;
  let rand = '';
  for (const byte of random) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      rand += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return time + rand.slice(0, 16);
}

export interface IdSource {
  videoId: () => string;
  messageId: () => string;
  requestId: () => string;
}

/**
 * ULIDs that also sort in creation order within one millisecond (the ULID spec's monotonic mode): the
 * random part of the previous id is incremented instead of drawn anew. Videos list "newest first" by id.
 */
function monotonicUlid(clock: Clock): () => string {
  let lastTime = -1;
  let lastRandom = new Uint8Array(10);
  return () => {
    const now = Math.floor(clock.now());
    if (now > lastTime) {
      lastTime = now;
      lastRandom = Uint8Array.from(pooledRandomBytes(10));
    } else {
      // Same millisecond (or a clock that stepped back): keep the time, increment the 80-bit random part.
      for (let index = lastRandom.length - 1; index >= 0; index--) {
        lastRandom[index] = ((lastRandom[index] ?? 0) + 1) & 0xff;
        if (lastRandom[index] !== 0) break;
      }
    }
    return ulid(lastTime, lastRandom);
  };
}

export function createIdSource(clock: Clock): IdSource {
  const nextVideoUlid = monotonicUlid(clock);
  return {
    videoId: () => `vid_${nextVideoUlid()}`,
    messageId: () => `msg_${ulid(clock.now())}`,
    requestId: () => `req_${ulid(clock.now())}`,
  };
}
