import { Writable } from 'node:stream';

import t from 'tap';
import { request } from 'undici';

import type { Problem } from '../schemas/problem.js';
import type { StreamToken } from '../schemas/stream-tokens.js';
import type { Video } from '../schemas/video.js';
import { createSecretScrubber } from '../src/lib/secrets.js';
import { deriveKey } from '../src/secrets/gateway-secret.js';
import { createStreamTokens, readStreamToken, signStreamToken, streamTokenLifetimeMs } from '../src/videos/stream-tokens.js';
import { auth, createVideo, startTestGateway, type TestGateway, upstreamIdOf } from './helpers/gateway.js';
import { ManualClock } from './helpers/manual-time.js';
import { until } from './helpers/until.js';

const key = deriveKey(Buffer.from('gs-test-0123456789abcdefghijklmnopqrstuvwxyz'), 'stream-tokens');
const videoId = 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC';

t.test('sign/read: the grant round-trips; any change to payload or MAC, or another key, is refused', async (t) => {
  const grant = { clientId: 'alice', videoId, expiresAt: 1_796_204_500_000 };
  const token = signStreamToken(key, grant);
  t.match(token, /^vst_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
  t.same(readStreamToken(key, token), grant);
  t.equal(readStreamToken(deriveKey(Buffer.from('another-secret-0123456789abcdefghijkl'), 'stream-tokens'), token), undefined);
  t.equal(readStreamToken(deriveKey(Buffer.from('gs-test-0123456789abcdefghijklmnopqrstuvwxyz'), 'other'), token), undefined);
  const [payload, mac] = token.slice(4).split('.') as [string, string];
  const forgedPayload = Buffer.from(`v1.bob.${videoId}.1796204500`).toString('base64url');
  t.equal(readStreamToken(key, `vst_${forgedPayload}.${mac}`), undefined, 'another client under the old MAC');
  const flipped = mac.startsWith('A') ? `B${mac.slice(1)}` : `A${mac.slice(1)}`;
  t.equal(readStreamToken(key, `vst_${payload}.${flipped}`), undefined, 'a changed MAC');
  for (const bad of [
    '',
    'vst_',
    `vst_${payload}`,
    `vst_${payload}.${mac}.x`,
    `xst_${payload}.${mac}`,
    `vst_${payload}.`,
    'vst_'.padEnd(600, 'a'),
  ]) {
    t.equal(readStreamToken(key, bad), undefined, JSON.stringify(bad.slice(0, 30)));
  }
  const oddPayload = 'v1.alice.vid_x.12.extra';
  t.equal(
    readStreamToken(key, `vst_${Buffer.from(oddPayload).toString('base64url')}.${signStreamToken(key, grant).split('.')[1]}`),
    undefined,
  );
});

t.test('tokens last 5 minutes on the injected clock, for one video only', async (t) => {
  const clock = new ManualClock(Date.parse('2026-11-29T12:00:00.400Z'));
  const tokens = createStreamTokens({ key, clock });
  const minted = tokens.mint('alice', videoId);
  t.equal(streamTokenLifetimeMs, 300_000);
  t.equal(minted.expiresAt, Date.parse('2026-11-29T12:05:00.000Z'), 'whole seconds, never later than the lifetime');
  t.same(tokens.verify(minted.token, videoId), { clientId: 'alice', videoId, expiresAt: minted.expiresAt });
  t.equal(tokens.verify(minted.token, 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HD'), undefined, 'another video');
  clock.set(minted.expiresAt - 1);
  t.ok(tokens.verify(minted.token, videoId), 'valid until the last millisecond');
  clock.set(minted.expiresAt);
  t.equal(tokens.verify(minted.token, videoId), undefined, 'expired at expiresAt');
  t.ok(createStreamTokens({ key, clock: new ManualClock(0) }).verify(minted.token, videoId), 'any replica with the same secret accepts it');
});

t.test('stream tokens never reach a log line', async (t) => {
  const token = signStreamToken(key, { clientId: 'alice', videoId, expiresAt: 1_796_204_500_000 });
  const line = JSON.stringify({ req: { url: `/videos/${videoId}/events?token=${token}` } });
  const scrubbed = createSecretScrubber().scrub(line);
  t.notMatch(scrubbed, token.slice(4, 20));
  t.notMatch(scrubbed, token.split('.')[1] ?? '');
  t.match(scrubbed, `/videos/${videoId}/events?token=[redacted]`);
});

async function mint(gw: TestGateway, id: string, who: 'alice' | 'bob' = 'alice') {
  return gw.app.inject({ method: 'POST', url: `/videos/${id}/stream-tokens`, headers: auth(who) });
}

async function completed(gw: TestGateway): Promise<Video> {
  const video = await createVideo(gw);
  gw.sandbox.completeNow(await upstreamIdOf(gw, video.id));
  gw.clock.advance(2_000);
  await gw.poller.tick();
  return video;
}

t.test('POST /videos/{id}/stream-tokens: a token for an own video, 404 for anyone else’s', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw);
  const response = await mint(gw, video.id);
  t.equal(response.statusCode, 200);
  t.equal(response.headers['cache-control'], 'no-store');
  const body = response.json<StreamToken>();
  t.same(Object.keys(body).sort(), ['expiresAt', 'token']);
  t.equal(body.expiresAt, new Date(gw.clock.now() + 300_000).toISOString());
  t.match(body.token, /^vst_/);

  t.equal((await mint(gw, video.id, 'bob')).statusCode, 404, "another client's video");
  t.equal((await mint(gw, 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC')).statusCode, 404, 'an unknown video');
  const empty = await gw.app.inject({ method: 'POST', url: `/videos/${video.id}/stream-tokens`, headers: auth(), payload: {} });
  t.equal(empty.statusCode, 200, '`{}` is as good as no body');
  const withBody = await gw.app.inject({
    method: 'POST',
    url: `/videos/${video.id}/stream-tokens`,
    headers: auth(),
    payload: { ttl: 3600 },
  });
  t.equal(withBody.statusCode, 400, 'a body with fields is refused, not ignored');
  t.equal(withBody.json<Problem>().code, 'validation_failed');
  const anonymous = await gw.app.inject({ method: 'POST', url: `/videos/${video.id}/stream-tokens` });
  t.equal(anonymous.statusCode, 401);
});

t.test('GET /videos/{id}/events?token= streams without Authorization; the token opens nothing else', async (t) => {
  const gw = await startTestGateway(t);
  const video = await completed(gw);
  const { token } = (await mint(gw, video.id)).json<StreamToken>();

  const stream = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${encodeURIComponent(token)}` });
  t.equal(stream.statusCode, 200);
  t.match(stream.headers['content-type'], /^text\/event-stream/);
  t.match(stream.body, /^event: status\n/);
  t.match(stream.body, /"status":"completed"/);

  const expectUnauthorized = async (url: string, why: string) => {
    const response = await gw.app.inject({ method: 'GET', url });
    t.equal(response.statusCode, 401, why);
    t.equal(response.json<Problem>().code, 'unauthorized', why);
    t.notMatch(response.body, token.slice(4, 24), `${why}: the token is not echoed`);
    t.notMatch(JSON.stringify(response.headers), token.slice(4, 24), `${why}: nor in a header`);
    return response;
  };
  await expectUnauthorized(`/videos/${video.id}?token=${token}`, 'GET /videos/{id}');
  await expectUnauthorized(`/videos?token=${token}`, 'GET /videos');
  await expectUnauthorized(`/videos/${video.id}/deliveries?token=${token}`, 'GET /videos/{id}/deliveries');

  const other = await createVideo(gw);
  const wrongVideo = await expectUnauthorized(`/videos/${other.id}/events?token=${token}`, 'another video');
  t.match(wrongVideo.json<Problem>().detail, /stream token is not valid for this video/);
  const [payload, mac] = token.slice(4).split('.') as [string, string];
  await expectUnauthorized(`/videos/${video.id}/events?token=vst_${payload}.${mac.slice(0, -2)}AA`, 'a forged token');
  await expectUnauthorized(`/videos/${video.id}/events?token=nonsense`, 'not a token');

  gw.clock.advance(5 * 60_000);
  await expectUnauthorized(`/videos/${video.id}/events?token=${token}`, 'expired');
  const withHeader = await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${token}`, headers: auth() });
  t.equal(withHeader.statusCode, 200, 'a valid Authorization header still works alongside a stale token');
});

t.test('a token-authenticated stream of a running video gets its changes, over a real socket', async (t) => {
  const gw = await startTestGateway(t);
  const video = await createVideo(gw);
  const { token } = (await mint(gw, video.id)).json<StreamToken>();
  const address = await gw.app.listen({ port: 0, host: '127.0.0.1' });
  const response = await request(`${address}/videos/${video.id}/events?token=${encodeURIComponent(token)}`);
  t.equal(response.statusCode, 200);
  let text = '';
  response.body.setEncoding('utf8');
  const ended = new Promise<void>((resolve) => response.body.on('end', resolve));
  response.body.on('data', (chunk: string) => {
    text += chunk;
  });
  await until(() => text.includes('\n\n'), 'the first status event');
  t.match(text, /"status":"queued"/);
  gw.sandbox.completeNow(await upstreamIdOf(gw, video.id));
  gw.clock.advance(2_000);
  await gw.poller.tick();
  await ended;
  t.match(text, /"status":"completed"/, 'the terminal event arrived and the stream ended');
});

t.test('at LOG_LEVEL=trace, no log line of minting, streaming or refusing carries the token', async (t) => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const gw = await startTestGateway(t, { env: { LOG_LEVEL: 'trace' }, gateway: { logger: { level: 'trace', stream } } });
  const video = await completed(gw);
  const { token } = (await mint(gw, video.id)).json<StreamToken>();
  t.equal((await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${token}` })).statusCode, 200);
  t.equal((await gw.app.inject({ method: 'GET', url: `/videos/${video.id}?token=${token}` })).statusCode, 401);
  gw.clock.advance(300_000);
  t.equal((await gw.app.inject({ method: 'GET', url: `/videos/${video.id}/events?token=${token}` })).statusCode, 401);
  t.ok(
    lines.some((line) => line.includes('/events?token=[redacted]')),
    'the requests were logged, token redacted',
  );
  const mac = token.split('.')[1] ?? '';
  t.equal(lines.filter((line) => line.includes(mac) || line.includes(token.slice(4, 30))).length, 0, 'no line carries the token');
});
