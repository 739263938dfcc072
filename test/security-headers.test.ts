import t from 'tap';

import { auth, startTestGateway } from './helpers/gateway.js';

const directives = (csp: string | undefined): Map<string, string[]> =>
  new Map(
    (csp ?? '')
      .split(';')
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0] !== undefined && words[0] !== '')
      .map(([name = '', ...values]) => [name, values]),
  );

t.test('API responses, problems included, carry security headers that fit a JSON API', async (t) => {
  const gw = await startTestGateway(t);
  const responses = {
    liveness: await gw.app.inject({ method: 'GET', url: '/healthz' }),
    unauthorized: await gw.app.inject({ method: 'GET', url: '/videos/vid_x' }),
    notFound: await gw.app.inject({ method: 'GET', url: '/nope' }),
    created: await gw.app.inject({ method: 'POST', url: '/videos', headers: auth(), payload: { prompt: 'A tiger walking in snow' } }),
    metrics: await gw.app.inject({ method: 'GET', url: '/metrics' }),
  };
  for (const [name, response] of Object.entries(responses)) {
    const headers = response.headers;
    t.equal(headers['x-content-type-options'], 'nosniff', `${name}: nosniff`);
    t.equal(headers['x-frame-options'], 'DENY', `${name}: never framed`);
    t.equal(headers['referrer-policy'], 'no-referrer', `${name}: no referrer`);
    t.match(headers['strict-transport-security'], /max-age=\d+/, `${name}: HSTS (honoured behind TLS)`);
    t.equal(headers['cross-origin-resource-policy'], 'same-origin', `${name}: CORP`);
    const csp = directives(headers['content-security-policy']);
    t.same(csp.get('default-src'), ["'none'"], `${name}: a JSON body opened as a page can load nothing`);
    t.same(csp.get('frame-ancestors'), ["'none'"]);
    t.notOk(csp.has('upgrade-insecure-requests'), `${name}: plain http on 127.0.0.1 and the LAN keeps working`);
    t.equal(headers['x-powered-by'], undefined);
    t.ok(headers['x-request-id'], `${name}: request id still there`);
  }
  t.equal(responses.created.statusCode, 202);
  t.equal(responses.unauthorized.statusCode, 401);
});

t.test('every API answer carries the full helmet set, the same bytes each time', async (t) => {
  const gw = await startTestGateway(t);
  const first = await gw.app.inject({ method: 'GET', url: '/healthz' });
  const second = await gw.app.inject({ method: 'GET', url: '/videos/vid_x', headers: auth() });
  const expected = {
    'content-security-policy': "default-src 'none';base-uri 'none';form-action 'none';frame-ancestors 'none'",
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'origin-agent-cluster': '?1',
    'referrer-policy': 'no-referrer',
    'strict-transport-security': 'max-age=31536000; includeSubDomains',
    'x-content-type-options': 'nosniff',
    'x-dns-prefetch-control': 'off',
    'x-download-options': 'noopen',
    'x-frame-options': 'DENY',
    'x-permitted-cross-domain-policies': 'none',
    'x-xss-protection': '0',
  };
  for (const response of [first, second]) {
    for (const [name, value] of Object.entries(expected)) t.equal(response.headers[name], value, `${response.statusCode}: ${name}`);
  }
});

t.test('Swagger UI still renders under its own CSP, and every asset its page references loads', async (t) => {
  const gw = await startTestGateway(t);
  const page = await gw.app.inject({ method: 'GET', url: '/docs/' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.body, /<div id="swagger-ui"><\/div>/);
  t.notMatch(page.body, /<script>|<script\s+(?![^>]*\bsrc=)[^>]*>/, 'no inline script for the CSP to block');

  const csp = directives(page.headers['content-security-policy']);
  t.same(csp.get('script-src'), ["'self'"], 'scripts from this origin');
  t.ok(csp.get('style-src')?.includes("'self'"), 'styles from this origin');
  t.ok(csp.get('img-src')?.includes('data:'), 'inline SVG/data images');
  t.ok(csp.get('connect-src')?.includes("'self'"), '"Try it out" may call the API');
  t.notOk(csp.has('upgrade-insecure-requests'));

  // Every script and stylesheet the page names, resolved against /docs/ as a browser would.
  const references = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] ?? '');
  t.ok(references.length >= 5, 'the page references its scripts, styles and icons');
  const expectedType = (path: string): RegExp =>
    path.endsWith('.js') ? /javascript/ : path.endsWith('.css') ? /^text\/css/ : path.endsWith('.png') ? /^image\/png/ : /./;
  for (const reference of references) {
    const url = new URL(reference, 'http://gateway/docs/').pathname;
    const asset = await gw.app.inject({ method: 'GET', url });
    t.equal(asset.statusCode, 200, `${url} loads`);
    t.match(asset.headers['content-type'], expectedType(url), `${url} has its content type`);
    t.equal(asset.headers['x-content-type-options'], 'nosniff');
  }
  const initializer = await gw.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
  t.match(initializer.body, /resolveUrl\('\.\/json'\)/, 'the initializer points the UI at the document beside it');
  t.match(initializer.body, /data:image\/svg\+xml/, 'its logo is a data: image, which img-src allows');
  t.equal((await gw.app.inject({ method: 'GET', url: '/docs/json' })).statusCode, 200);
});

t.test('the sandbox sample media stay embeddable from other origins (a phone plays them)', async (t) => {
  const gw = await startTestGateway(t, { gateway: { serveSandboxAssets: true } });
  for (const file of ['sample.mp4', 'thumbnail.jpg']) {
    const response = await gw.app.inject({ method: 'GET', url: `/sandbox/assets/${file}`, headers: { range: 'bytes=0-99' } });
    t.equal(response.statusCode, 206);
    t.equal(response.headers['cross-origin-resource-policy'], 'cross-origin', `${file}: cross-origin`);
    t.equal(response.headers['x-content-type-options'], 'nosniff');
  }
});
