import t from 'tap';

import { createInProcessBus } from '../src/events/bus.js';
import { createIdSource, ulid } from '../src/ids.js';
import type { VideoRecord } from '../src/store/records.js';
import { ManualClock } from './helpers/manual-time.js';

t.test('ids are prefixed, 26 Crockford characters, and sort by creation time', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const ids = createIdSource(clock);
  const first = ids.videoId();
  clock.advance(1);
  const second = ids.videoId();
  t.match(first, /^vid_[0-9A-HJKMNP-TV-Z]{26}$/);
  t.ok(first < second, 'later ids sort after earlier ones');
  t.match(ids.messageId(), /^msg_/);
  t.equal(ulid(0, new Uint8Array(10)), '0'.repeat(26));
  t.equal(ulid(Date.parse('2026-11-29T12:00:00.000Z'), new Uint8Array(10)).slice(0, 10), first.slice(4, 14));
});

t.test('video ids made in the same millisecond still sort in creation order', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.000Z'));
  const ids = createIdSource(clock);
  const made = Array.from({ length: 1000 }, () => ids.videoId());
  t.same([...made].sort(), made, 'sorted order is creation order');
  t.equal(new Set(made).size, made.length, 'all distinct');
  clock.advance(-5);
  t.ok(ids.videoId() > (made.at(-1) ?? ''), 'a clock stepping back never yields an older id');
});

t.test('the bus delivers to the video’s listeners and to global ones, and forgets unsubscribed listeners', async (t) => {
  const bus = createInProcessBus();
  const video = { id: 'vid_a' } as VideoRecord;
  const seen: string[] = [];
  const off = bus.subscribe('vid_a', () => seen.push('a'));
  bus.subscribe('vid_b', () => seen.push('b'));
  const offAll = bus.subscribeAll(() => seen.push('all'));
  bus.subscribe('vid_a', () => {
    throw new Error('a broken listener');
  });
  bus.publish({ video });
  t.same(seen, ['all', 'a'], 'a throwing listener does not stop the others');
  t.equal(bus.listenerCount('vid_a'), 2);
  off();
  offAll();
  t.equal(bus.listenerCount(), 2);
  t.equal(bus.listenerCount('vid_a'), 1);
});
