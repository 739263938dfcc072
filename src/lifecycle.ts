import type { VideoStatus, WebhookEventType } from '../schemas/video.js';

/** Statuses of a video still running: the poller tracks it and its state may change. */
export const runningStatuses = ['queued', 'processing'] as const satisfies readonly VideoStatus[];

/** `completed` and `failed` are final: a terminal video never changes status again. */
export const isTerminal = (status: VideoStatus): boolean => status === 'completed' || status === 'failed';

/** The webhook event a video emits on entering a status (none for `queued`, where every video starts). */
export const eventForStatus: Readonly<Record<VideoStatus, WebhookEventType | null>> = {
  queued: null,
  processing: 'video.processing',
  completed: 'video.completed',
  failed: 'video.failed',
};
