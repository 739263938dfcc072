import { VideoId } from '../../schemas/video.js';

/*
 * Opaque cursors of GET /videos. A cursor names the last video of the page served; the next page is every
 * video with a smaller id. Ids are time-sortable ULIDs, so a video created meanwhile sorts above the cursor
 * and can neither shift a page nor appear twice (keyset pagination). The version prefix lets the format change.
 */

const version = 'v1:';
const videoIdPattern = new RegExp(VideoId.pattern ?? '^vid_');
/** Base64url of `v1:` + a video id; anything longer is not one of ours. */
const maxCursorLength = 64;

export function encodeCursor(lastVideoId: string): string {
  return Buffer.from(`${version}${lastVideoId}`, 'utf8').toString('base64url');
}

/** The video id a cursor points after, or undefined when the cursor is not one this gateway issued. */
export function decodeCursor(cursor: string): string | undefined {
  if (cursor.length === 0 || cursor.length > maxCursorLength || !/^[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!text.startsWith(version)) return undefined;
  const id = text.slice(version.length);
  return videoIdPattern.test(id) ? id : undefined;
}
