import t from 'tap';

import type { VideoRecord } from '../src/store/records.js';
import { firstPollDelay, nextPollDelay } from '../src/tracking/schedule.js';
import { decideAfterAnswer, decideAfterError, type DecisionContext, eventsFor } from '../src/tracking/transitions.js';
import { UpstreamError, type UpstreamGeneration } from '../src/upstream/types.js';
import { videoRequest } from './helpers/records.js';

const schedule = { minMs: 2000, maxMs: 15_000 };
const middle = () => 0.5;

t.test('poll delays grow ×1.5 from the minimum up to the maximum, with ±10 % jitter', async (t) => {
  t.same(
    [0, 1, 2, 3, 4, 5, 6, 10].map((polls) => nextPollDelay(polls, null, schedule, middle)),
    [2000, 3000, 4500, 6750, 10_125, 15_000, 15_000, 15_000],
  );
  t.equal(
    nextPollDelay(0, null, schedule, () => 0),
    1800,
    '-10 %',
  );
  t.equal(
    nextPollDelay(0, null, schedule, () => 0.999_999),
    2200,
    '+10 %',
  );
});

t.test('the upstream estimate pushes a poll later but never past the maximum', async (t) => {
  t.equal(firstPollDelay(8, schedule, middle), 8000);
  t.equal(firstPollDelay(120, schedule, middle), 15_000);
  t.equal(firstPollDelay(0.5, schedule, middle), 2000, 'a short estimate never polls faster than the schedule');
  t.equal(firstPollDelay(null, schedule, middle), 2000);
});

const now = Date.parse('2026-11-29T12:00:00.000Z');
const video = (overrides: Partial<VideoRecord> = {}): VideoRecord => ({
  id: 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC',
  clientId: 'alice',
  endUserId: null,
  upstreamId: 'up-1',
  status: 'queued',
  upstreamState: 'queued',
  request: videoRequest({
    prompt: 'A tiger',
    callbackUrl: 'https://example.com/hook',
    webhookEvents: ['video.processing', 'video.completed', 'video.failed'],
  }),
  estimatedWaitSeconds: null,
  result: null,
  failure: null,
  createdAt: now - 10_000,
  updatedAt: now - 10_000,
  completedAt: null,
  nextPollAt: now,
  pollAttempts: 1,
  notFoundSince: null,
  leaseUntil: now + 60_000,
  version: 1,
  ...overrides,
});
let messages = 0;
const context = (overrides: Partial<DecisionContext> = {}): DecisionContext => ({
  now,
  policy: { schedule, taskTimeoutMs: 7_200_000, notFoundGraceMs: 60_000 },
  random: middle,
  newMessageId: () => `msg_${++messages}`,
  ...overrides,
});
const generation = (overrides: Partial<UpstreamGeneration> = {}): UpstreamGeneration => ({
  upstreamId: 'up-1',
  state: 'dreaming',
  status: 'processing',
  estimateWaitSeconds: 7,
  failureReason: null,
  video: null,
  rawVideo: null,
  thumbnail: null,
  lastFrame: null,
  ...overrides,
});

t.test('queued → processing emits video.processing when subscribed', async (t) => {
  const decision = decideAfterAnswer(video(), generation(), context());
  t.equal(decision.kind, 'transition');
  if (decision.kind !== 'transition') return;
  t.equal(decision.transition.status, 'processing');
  t.equal(decision.transition.estimatedWaitSeconds, 7);
  t.same(
    decision.events.map((event) => event.eventType),
    ['video.processing'],
  );
  t.equal(decision.nextPollAt, now + 7000);
});

t.test('events follow subscriptions and need a callback URL', async (t) => {
  const ids = () => 'msg_x';
  t.same(eventsFor(video({ request: { ...video().request, webhookEvents: ['video.completed'] } }), 'processing', ids), []);
  t.same(eventsFor(video({ request: { ...video().request, callbackUrl: null } }), 'completed', ids), []);
  t.same(eventsFor(video(), 'completed', ids), [{ messageId: 'msg_x', eventType: 'video.completed' }]);
  t.same(eventsFor(video({ status: 'processing' }), 'processing', ids), [], 'no event without a change');
});

t.test('running states never move a video backwards', async (t) => {
  const decision = decideAfterAnswer(video({ status: 'processing' }), generation({ state: 'queued', status: 'queued' }), context());
  t.equal(decision.kind, 'reschedule');
});

t.test('completed without a playable file keeps polling; with one it completes', async (t) => {
  t.equal(decideAfterAnswer(video(), generation({ state: 'completed', status: 'completed' }), context()).kind, 'transition');
  const withoutFile = decideAfterAnswer(
    video({ status: 'processing' }),
    generation({ state: 'completed', status: 'completed' }),
    context(),
  );
  t.equal(withoutFile.kind, 'reschedule');
  const done = decideAfterAnswer(
    video({ status: 'processing' }),
    generation({
      state: 'completed',
      status: 'completed',
      video: { url: 'https://cdn.example/v.mp4', width: 1, height: 1, durationSeconds: 5, downloadUrl: null },
    }),
    context(),
  );
  t.equal(done.kind === 'transition' && done.transition.status, 'completed');
  t.equal(done.kind === 'transition' && done.nextPollAt, null);
});

t.test('failed carries the sanitised upstream reason, or a generic one', async (t) => {
  const reasoned = decideAfterAnswer(
    video(),
    generation({ state: 'failed', status: 'failed', failureReason: 'Advanced prompt moderation failed' }),
    context(),
  );
  t.same(reasoned.kind === 'transition' && reasoned.transition.failure, {
    code: 'upstream_failed',
    message: 'Advanced prompt moderation failed',
  });
  const silent = decideAfterAnswer(video(), generation({ state: 'failed', status: 'failed' }), context());
  t.same(silent.kind === 'transition' && silent.transition.failure?.code, 'upstream_failed');
});

t.test('task_not_exist: grace window from the first miss, then upstream_lost', async (t) => {
  const missing = new UpstreamError('not_found', 'gone');
  const first = decideAfterError(video(), missing, context());
  t.equal(first.kind === 'reschedule' && first.schedule.notFoundSince, now);
  const within = decideAfterError(video({ notFoundSince: now - 59_000 }), missing, context());
  t.equal(within.kind, 'reschedule');
  const after = decideAfterError(video({ notFoundSince: now - 60_000 }), missing, context());
  t.equal(after.kind === 'transition' && after.transition.failure?.code, 'upstream_lost');
});

t.test('a task past TASK_TIMEOUT_MS fails timed_out, whatever the upstream says', async (t) => {
  const old = video({ createdAt: now - 7_200_000 });
  const onAnswer = decideAfterAnswer(old, generation(), context());
  t.equal(onAnswer.kind === 'transition' && onAnswer.transition.failure?.code, 'timed_out');
  const onError = decideAfterError(old, new UpstreamError('unavailable', 'down', 503), context());
  t.equal(onError.kind === 'transition' && onError.transition.failure?.code, 'timed_out');
});

t.test('Retry-After defers the next poll; auth failures poll at the slowest pace and keep the video', async (t) => {
  const limited = decideAfterError(video(), new UpstreamError('rate_limited', 'slow down', 429, 60_000), context());
  t.equal(limited.kind === 'reschedule' && limited.schedule.nextPollAt, now + 60_000);
  const refused = decideAfterError(video(), new UpstreamError('auth', 'refused', 401), context());
  t.equal(refused.kind, 'reschedule');
  t.equal(refused.kind === 'reschedule' && refused.schedule.nextPollAt, now + 15_000);
  // Even past TASK_TIMEOUT_MS: the video may well have finished upstream; a refused key is ours to fix, not the client's loss.
  const refusedLate = decideAfterError(video({ createdAt: now - 7_200_000 }), new UpstreamError('auth', 'refused', 403), context());
  t.equal(refusedLate.kind, 'reschedule', 'a refused key never fails a video, not even as timed_out');
});
