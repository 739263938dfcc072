import type { VideoStatus } from '../../schemas/video.js';
import type { Random } from '../clock.js';
import { eventForStatus, isTerminal } from '../lifecycle.js';
import type { OutboxEvent, PollReschedule, VideoRecord, VideoTransition } from '../store/records.js';
import { sanitizeUpstreamMessage } from '../upstream/failures.js';
import { toVideoResult } from '../upstream/generation.js';
import type { UpstreamError, UpstreamGeneration } from '../upstream/types.js';
import { nextPollDelay, type PollScheduleOptions } from './schedule.js';

export interface TrackingPolicy {
  schedule: PollScheduleOptions;
  /** Running videos fail with `timed_out` after this long (TASK_TIMEOUT_MS). */
  taskTimeoutMs: number;
  /** How long a task may answer `task_not_exist` before the video fails with `upstream_lost`. */
  notFoundGraceMs: number;
}

export type PollDecision =
  | { kind: 'transition'; transition: VideoTransition; nextPollAt: number | null; events: OutboxEvent[] }
  | { kind: 'reschedule'; schedule: PollReschedule };

export interface DecisionContext {
  now: number;
  policy: TrackingPolicy;
  random: Random;
  newMessageId: () => string;
}

/** Outbox rows for a status change, for the events the video subscribed to (only with a callback URL). */
export function eventsFor(video: VideoRecord, status: VideoStatus, newMessageId: () => string): OutboxEvent[] {
  if (video.request.callbackUrl === null || status === video.status) return [];
  const eventType = eventForStatus[status];
  if (eventType === null || !video.request.webhookEvents.includes(eventType)) return [];
  return [{ messageId: newMessageId(), eventType }];
}

function transitionTo(video: VideoRecord, transition: VideoTransition, context: DecisionContext): PollDecision {
  const nextPollAt = isTerminal(transition.status)
    ? null
    : context.now + nextPollDelay(video.pollAttempts + 1, transition.estimatedWaitSeconds, context.policy.schedule, context.random);
  return { kind: 'transition', transition, nextPollAt, events: eventsFor(video, transition.status, context.newMessageId) };
}

function fail(
  video: VideoRecord,
  code: 'upstream_failed' | 'timed_out' | 'upstream_lost',
  message: string,
  context: DecisionContext,
): PollDecision {
  return transitionTo(
    video,
    { status: 'failed', upstreamState: video.upstreamState, estimatedWaitSeconds: null, result: null, failure: { code, message } },
    context,
  );
}

function reschedule(
  video: VideoRecord,
  context: DecisionContext,
  extra: { notFoundSince?: number | null; estimatedWaitSeconds?: number | null; upstreamState?: string | null; notBefore?: number } = {},
): PollDecision {
  const estimate = extra.estimatedWaitSeconds !== undefined ? extra.estimatedWaitSeconds : video.estimatedWaitSeconds;
  const delay = nextPollDelay(video.pollAttempts + 1, estimate, context.policy.schedule, context.random);
  const schedule: PollReschedule = {
    nextPollAt: Math.max(context.now + delay, extra.notBefore ?? 0),
    pollAttempts: video.pollAttempts + 1,
    notFoundSince: extra.notFoundSince !== undefined ? extra.notFoundSince : video.notFoundSince,
  };
  if (extra.estimatedWaitSeconds !== undefined) schedule.estimatedWaitSeconds = extra.estimatedWaitSeconds;
  if (extra.upstreamState !== undefined) schedule.upstreamState = extra.upstreamState;
  return { kind: 'reschedule', schedule };
}

const timedOut = (video: VideoRecord, context: DecisionContext): boolean => context.now - video.createdAt >= context.policy.taskTimeoutMs;

const timeoutMessage = (context: DecisionContext): string =>
  `The generation did not finish within ${Math.round(context.policy.taskTimeoutMs / 60000)} minutes.`;

/** What to do with a running video after the upstream answered its query. Pure. */
export function decideAfterAnswer(video: VideoRecord, generation: UpstreamGeneration, context: DecisionContext): PollDecision {
  const upstreamState = generation.state;
  if (generation.status === 'failed') {
    const reason = generation.failureReason === null ? '' : sanitizeUpstreamMessage(generation.failureReason);
    return fail(video, 'upstream_failed', reason === '' ? 'The upstream could not generate this video.' : reason, context);
  }
  if (generation.status === 'completed') {
    const result = toVideoResult(generation, context.now);
    // A "completed" answer without a playable file is not trusted: keep polling until it has one (or times out).
    if (result !== null) {
      return transitionTo(video, { status: 'completed', upstreamState, estimatedWaitSeconds: null, result, failure: null }, context);
    }
  }
  if (timedOut(video, context)) return fail(video, 'timed_out', timeoutMessage(context), context);
  // Running states never move a video backwards (processing → queued is ignored).
  const status: VideoStatus = video.status === 'processing' || generation.status !== 'queued' ? 'processing' : 'queued';
  if (status !== video.status) {
    return transitionTo(
      video,
      { status, upstreamState, estimatedWaitSeconds: generation.estimateWaitSeconds, result: null, failure: null },
      context,
    );
  }
  return reschedule(video, context, { notFoundSince: null, estimatedWaitSeconds: generation.estimateWaitSeconds, upstreamState });
}

/** What to do with a running video after its query failed. Pure. */
export function decideAfterError(video: VideoRecord, error: UpstreamError, context: DecisionContext): PollDecision {
  if (error.kind === 'not_found') {
    const since = video.notFoundSince ?? context.now;
    if (context.now - since >= context.policy.notFoundGraceMs) {
      return fail(video, 'upstream_lost', 'The upstream no longer knows this generation.', context);
    }
    if (timedOut(video, context)) return fail(video, 'timed_out', timeoutMessage(context), context);
    return reschedule(video, context, { notFoundSince: since });
  }
  // Auth failures are the gateway's own misconfiguration: keep the video (never failed, not even as timed_out: it
  // may have finished upstream long ago), poll again at the slowest pace. Once the key works, the next answer decides.
  if (error.kind === 'auth') return reschedule(video, context, { notBefore: context.now + context.policy.schedule.maxMs });
  if (timedOut(video, context)) return fail(video, 'timed_out', timeoutMessage(context), context);
  const notBefore = error.retryAfterMs !== null ? context.now + error.retryAfterMs : undefined;
  return reschedule(video, context, notBefore === undefined ? {} : { notBefore });
}
