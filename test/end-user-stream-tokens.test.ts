import t from 'tap';

import type { StreamToken } from '../schemas/stream-tokens.js';
import { deriveKey } from '../src/secrets/gateway-secret.js';
import { readStreamToken, signStreamToken } from '../src/videos/stream-tokens.js';
import { apiKey, createAs, setup } from './helpers/end-user-gateway.js';

/* Stream tokens of end users (DESIGN §2.4, §2.7): minted for their own videos only, and scoped like their minter. */

const gatewaySecret = Buffer.from('gs-end-users-0123456789abcdefghijklmnopqrstuvwxyz');
const key = deriveKey(gatewaySecret, 'stream-tokens');

t.test('the grant carries the end user, whatever characters its id holds', async (t) => {
  const videoId = 'vid_01JDXYZ8M6X1ZP3V9R4QK7T2HC';
  for (const endUserId of [null, 'user_1', 'a.b:c@d|e-f_g', 'x'.repeat(128)]) {
    const grant = { clientId: 'alice', endUserId, videoId, expiresAt: 1_796_204_500_000 };
    t.same(readStreamToken(key, signStreamToken(key, grant)), grant, `round-trips ${String(endUserId).slice(0, 20)}`);
  }
  const appToken = signStreamToken(key, { clientId: 'alice', endUserId: null, videoId, expiresAt: 1_796_204_500_000 });
  const userToken = signStreamToken(key, { clientId: 'alice', endUserId: 'user_1', videoId, expiresAt: 1_796_204_500_000 });
  const [appPayload] = appToken.slice(4).split('.') as [string];
  const userMac = userToken.split('.')[1] ?? '';
  t.equal(readStreamToken(key, `vst_${appPayload}.${userMac}`), undefined, "an end user's MAC does not sign the app server's grant");
});

t.test("an end user mints stream tokens for its own videos only, and its token never opens another user's", async (t) => {
  const s = await setup(t, {}, { gatewaySecret });
  const u1 = await s.token('user_1');
  const u2 = await s.token('user_2');
  const own = await createAs(s, u1);
  const others = await createAs(s, u2);
  const appMade = await createAs(s, apiKey('alice'));

  const mint = async (id: string, credential: string) => s.call('POST', `/videos/${id}/stream-tokens`, credential);
  const minted = await mint(own.id, u1);
  t.equal(minted.status, 200, 'its own video: a token');
  const { token } = (await minted.json()) as StreamToken;
  t.equal(readStreamToken(key, token)?.endUserId, 'user_1', 'the token names the end user that minted it');
  t.equal((await mint(others.id, u1)).status, 404, "another end user's video: 404, as for an unknown id");
  t.equal((await mint(appMade.id, u1)).status, 404, "the app server's own video: 404");
  t.equal((await mint(others.id, apiKey('alice'))).status, 200, 'the app server mints for any video of its client');

  /** Status and first bytes of the events stream opened with `?token=` (then closed). */
  const open = async (id: string, streamToken: string): Promise<{ status: number; text: string }> => {
    const abort = new AbortController();
    const response = await fetch(`${s.base}/videos/${id}/events?token=${encodeURIComponent(streamToken)}`, { signal: abort.signal });
    let text = '';
    if (response.status === 200 && response.body !== null) {
      const reader = response.body.getReader();
      while (!text.includes('\n\n')) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += Buffer.from(chunk.value).toString('utf8');
      }
    } else {
      text = await response.text();
    }
    abort.abort();
    return { status: response.status, text };
  };
  const opened = await open(own.id, token);
  t.equal(opened.status, 200, 'its token opens its own stream');
  t.match(opened.text, /event: status/);
  t.match(opened.text, own.id);

  // A valid grant for the other user's video, as if user_1 had minted it: the stream is read as user_1, so 404.
  const expiresAt = s.gw.clock.now() + 60_000;
  const forUser1 = signStreamToken(key, { clientId: 'alice', endUserId: 'user_1', videoId: others.id, expiresAt });
  const refused = await open(others.id, forUser1);
  t.equal(refused.status, 404, "a token bound to user_1 never opens user_2's video");
  t.notMatch(refused.text, others.id.slice(4) + '"', 'and shows nothing of it');
  const forApp = signStreamToken(key, { clientId: 'alice', endUserId: null, videoId: others.id, expiresAt });
  t.equal((await open(others.id, forApp)).status, 200, "the app server's token for the same video opens it");
});
