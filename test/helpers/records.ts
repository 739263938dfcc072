import type { VideoRequest } from '../../src/store/records.js';

/** A normalised create request as the store keeps it; tests override what they exercise. */
export const videoRequest = (overrides: Partial<VideoRequest> = {}): VideoRequest => ({
  prompt: 'A tiger walking in snow',
  aspectRatio: '16:9',
  loop: false,
  model: null,
  resolution: null,
  duration: null,
  keyframes: null,
  callbackUrl: null,
  webhookEvents: ['video.completed', 'video.failed'],
  metadata: null,
  ...overrides,
});
