import type { TSchema } from '@sinclair/typebox';

import { DeliveryAttempt, WebhookEvent } from './deliveries.js';
import { VideoList } from './list.js';
import { Problem, ProblemFieldError } from './problem.js';
import { StreamToken } from './stream-tokens.js';
import { CreateVideoBody, Video } from './video.js';

/** Schemas registered once (`app.addSchema`) and referenced by `$ref`: they become OpenAPI components. */
export const sharedSchemas: TSchema[] = [
  ProblemFieldError,
  Problem,
  CreateVideoBody,
  Video,
  VideoList,
  DeliveryAttempt,
  WebhookEvent,
  StreamToken,
];
