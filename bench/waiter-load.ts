// Figure 6's clients, in their own process: SSE_COUNT event streams and POLL_COUNT long-polls (`?wait=60`)
// spread over VIDEO_IDS, all opened before the videos change. Prints `HELD {…}` once every one is open (each
// stream has had its first event, each long-poll is sent), then `RESULT {…}`: for each waiter, how long after
// the video's change (its `updatedAt`) the new state arrived. Env: GATEWAY_URL, BENCH_KEY.
import { type IncomingMessage, request } from 'node:http';

const gatewayUrl = process.env['GATEWAY_URL'] ?? '';
const headers = { authorization: `Bearer ${process.env['BENCH_KEY'] ?? ''}` };
const videoIds = (process.env['VIDEO_IDS'] ?? '').split(',');
const sseCount = Number(process.env['SSE_COUNT'] ?? 0);
const pollCount = Number(process.env['POLL_COUNT'] ?? 0);
const openAtOnce = 200;

/** Per answer: arrival minus the video's `updatedAt`. */
const latenciesMs: number[] = [];
/** Answers by the status they carried (all should be the changed one). */
const statuses: Record<string, number> = {};
const errors: string[] = [];
let held = false;
let answeredBeforeHeld = 0;
let pending = sseCount + pollCount;
let finish: () => void = () => undefined;
const allDone = new Promise<void>((resolve) => (finish = resolve));

function record(json: string): void {
  const arrivedAt = Date.now();
  const video: unknown = JSON.parse(json);
  const updatedAt = typeof video === 'object' && video !== null && 'updatedAt' in video ? video.updatedAt : undefined;
  const status = typeof video === 'object' && video !== null && 'status' in video ? String(video.status) : 'unknown';
  latenciesMs.push(arrivedAt - Date.parse(String(updatedAt)));
  statuses[status] = (statuses[status] ?? 0) + 1;
  if (!held) answeredBeforeHeld += 1;
}

function done(error?: string): void {
  if (error !== undefined) errors.push(error);
  pending -= 1;
  if (pending === 0) finish();
}

const get = (path: string, onResponse: (response: IncomingMessage) => void): ReturnType<typeof request> => {
  const outgoing = request(`${gatewayUrl}${path}`, { headers, agent: false }, onResponse);
  outgoing.on('error', (error) => done(error.message));
  outgoing.end();
  return outgoing;
};

/** Resolves at the stream's first event; records the second (the change) and closes the stream. */
const openStream = (id: string): Promise<void> =>
  new Promise((opened) => {
    let buffer = '';
    let events = 0;
    const outgoing = get(`/videos/${id}/events`, (response) => {
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
          buffer = buffer.slice(end + 2);
          if (data === undefined) continue; // a keep-alive comment
          events += 1;
          if (events === 1) opened();
          else {
            record(data);
            outgoing.destroy();
            done();
          }
        }
      });
    });
    outgoing.on('error', () => opened());
  });

/** Resolves once the long-poll is sent; records its answer. */
const openPoll = (id: string): Promise<void> =>
  new Promise((opened) => {
    const outgoing = get(`/videos/${id}?wait=60`, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        if (response.statusCode === 200) record(body);
        done(response.statusCode === 200 ? undefined : `long-poll answered ${response.statusCode}`);
      });
    });
    outgoing.on('finish', () => opened());
    outgoing.on('error', () => opened());
  });

const startedAt = Date.now();
const openers = [
  ...Array.from({ length: sseCount }, (_, index) => () => openStream(videoIds[index % videoIds.length] ?? '')),
  ...Array.from({ length: pollCount }, (_, index) => () => openPoll(videoIds[index % videoIds.length] ?? '')),
];
for (let from = 0; from < openers.length; from += openAtOnce)
  await Promise.all(openers.slice(from, from + openAtOnce).map((open) => open()));
held = true;
process.stdout.write(`HELD ${JSON.stringify({ openMs: Date.now() - startedAt, errors: errors.length })}\n`);

const timeout = setTimeout(finish, 90_000);
await allDone;
clearTimeout(timeout);
const result = { latenciesMs, statuses, errors: errors.slice(0, 20), errorCount: errors.length, answeredBeforeHeld, unanswered: pending };
// Exit only once the line is out: a pipe is written asynchronously.
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`, () => process.exit(0));
