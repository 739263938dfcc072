/**
 * A real Chromium (Debian's, driven by playwright-core) against a real sandbox gateway on a socket:
 *   1. Swagger UI at /docs: Authorize with a key, "Try it out" on POST /videos → 202, then GET /videos/{id}?wait=30
 *      → completed, with no console error and no CSP violation;
 *   2. a plain page on another origin creates a video with fetch and follows it with EventSource + a stream token.
 * Screenshots go to test-artifacts/ (kept by CI). The sandbox completes videos in ~1.5 s of real time: a browser
 * cannot run on a manual clock, so waits here are bounded by `until`/playwright timeouts, never asserted speeds.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Browser, chromium, type Page } from 'playwright-core';
import t, { type Test } from 'tap';

import { createClientRegistry } from '../src/auth/clients.js';
import { startLiveSandboxGateway } from '../src/sandbox/live-gateway.js';
import { clientKeys, testClientsFile } from './helpers/gateway.js';

const chromiumPath = '/usr/bin/chromium';
const artifacts = fileURLToPath(new URL('../test-artifacts/', import.meta.url));

if (!existsSync(chromiumPath) && process.env['REQUIRE_BROWSER'] !== '1') {
  t.comment(`browser tests skipped: no chromium at ${chromiumPath}`);
  t.pass('skipped');
} else {
  t.setTimeout(180_000);
  t.test('in Chromium', async (t) => {
    await mkdir(artifacts, { recursive: true });
    const page = await startPageServer(t);
    const live = await startLiveSandboxGateway({
      clients: createClientRegistry({
        clients: testClientsFile.clients.map((client) => (client.id === 'alice' ? { ...client, allowedOrigins: [page.origin] } : client)),
      }),
      sqlitePath: join(t.testdir(), 'gateway.db'),
      env: { SANDBOX_DURATION_MS: '1500ms', SANDBOX_QUEUE_MS: '300ms', POLL_INTERVAL_MIN_MS: '100ms', POLL_INTERVAL_MAX_MS: '200ms' },
    });
    t.teardown(() => live.close());
    page.setGateway(live.url);

    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--no-sandbox',
        '--headless=new',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    t.teardown(() => browser.close());

    await t.test('Swagger UI: Authorize, try POST /videos (202), then GET /videos/{id}?wait=30 (completed)', (t) =>
      swaggerUi(t, browser, live.url),
    );
    await t.test('a page on another origin: fetch creates, EventSource with a stream token follows to completed', (t) =>
      crossOriginPage(t, browser, page.origin),
    );
  });
}

/** Console errors, uncaught page errors and CSP violations of a page, collected as they happen. */
async function watchProblems(page: Page): Promise<() => Promise<string[]>> {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // Strings run in the page (this project compiles without the DOM library).
  await page.addInitScript(
    "window.cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));",
  );
  return async () => [...problems, ...(await page.evaluate<string[]>('window.cspViolations')).map((violation) => `CSP: ${violation}`)];
}

async function swaggerUi(t: Test, browser: Browser, gatewayUrl: string): Promise<void> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1600 } });
  t.teardown(() => context.close());
  const page = await context.newPage();
  const problems = await watchProblems(page);
  await page.goto(`${gatewayUrl}/docs`);
  await page.locator('.opblock-tag-section').first().waitFor();

  // Authorize with alice's key.
  await page.locator('button.authorize').first().click();
  const modal = page.locator('.dialog-ux .modal-ux');
  const bearer = modal.locator('form').filter({ hasText: 'bearerAuth' });
  await bearer.locator('input').first().fill(clientKeys.alice);
  await bearer.locator('button.authorize').click();
  await modal.locator('button.btn-done').first().click();

  // POST /videos: try it out with a body of our own (no callbackUrl to a stranger's host).
  const create = page.locator('#operations-videos-createVideo');
  await create.locator('.opblock-summary').click();
  await create.locator('button.try-out__btn').click();
  await create.locator('textarea.body-param__text').fill(JSON.stringify({ prompt: 'A tiger walking in snow, from Swagger UI' }));
  await create.locator('button.execute').click();
  const createStatus = create.locator('.live-responses-table tr.response .response-col_status').first();
  await createStatus.waitFor();
  t.equal((await createStatus.innerText()).trim(), '202', 'POST /videos answered 202');
  const createBody = await create.locator('.live-responses-table tr.response .response-col_description').first().innerText();
  const id = /"id": "(vid_[0-9A-Za-z]+)"/.exec(createBody)?.[1];
  t.ok(id, `the created video's id is shown (${id ?? 'none'})`);
  await page.screenshot({ path: join(artifacts, 'swagger-create.png'), fullPage: true });

  // GET /videos/{id}?wait=30: long-polls until the sandbox completes it.
  const read = page.locator('#operations-videos-getVideo');
  await read.locator('.opblock-summary').click();
  await read.locator('button.try-out__btn').click();
  await read.locator('tr[data-param-name="id"] input').fill(id ?? '');
  await read.locator('tr[data-param-name="wait"] input').fill('30');
  // `?wait` answers on any status change: queued → processing may come first, so ask again (as a user would).
  let readStatus = '';
  let readBody = '';
  for (let attempt = 0; attempt < 5 && !readBody.includes('"status": "completed"'); attempt++) {
    if (attempt > 0) await read.locator('button.btn-clear').click();
    await read.locator('button.execute').click();
    const status = read.locator('.live-responses-table tr.response .response-col_status').first();
    await status.waitFor({ timeout: 40_000 });
    readStatus = (await status.innerText()).trim();
    readBody = await read.locator('.live-responses-table tr.response .response-col_description').first().innerText();
  }
  t.equal(readStatus, '200');
  t.match(readBody, '"status": "completed"', 'GET /videos/{id}?wait=30 shows the completed video');
  await page.screenshot({ path: join(artifacts, 'swagger-completed.png'), fullPage: true });
  t.same(await problems(), [], 'no console errors, no CSP violations');
}

async function crossOriginPage(t: Test, browser: Browser, pageOrigin: string): Promise<void> {
  const context = await browser.newContext();
  t.teardown(() => context.close());
  const page = await context.newPage();
  const problems = await watchProblems(page);
  await page.goto(`${pageOrigin}/`);
  await page.waitForFunction('window.outcome !== undefined', undefined, { timeout: 60_000 });
  const outcome = await page.evaluate<{ error?: string; status?: string; statuses: string[]; location: string; requestId: string }>(
    'window.outcome',
  );
  await page.screenshot({ path: join(artifacts, 'cross-origin-page.png'), fullPage: true });
  t.equal(outcome.error, undefined, 'no fetch or stream error');
  t.equal(outcome.status, 'completed', 'followed to completed over EventSource');
  t.equal(outcome.statuses.at(-1), 'completed');
  t.match(outcome.location, /^\/videos\/vid_/, 'the exposed Location header is readable');
  t.ok(outcome.requestId, 'the exposed x-request-id header is readable');
  t.same(await problems(), [], 'no console errors');
}

/** The test page's origin: another port of 127.0.0.1 is another origin. */
async function startPageServer(t: Test): Promise<{ origin: string; setGateway(url: string): void }> {
  let gatewayUrl = '';
  const server = createServer((request, response) => {
    if (request.url !== '/') {
      // favicon.ico: nothing, rather than a 404 the console would report.
      response.writeHead(204).end();
      return;
    }
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(pageHtml(gatewayUrl, clientKeys.alice));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setGateway: (url) => {
      gatewayUrl = url;
    },
  };
}

/** The README's browser code ("From a browser"), nearly verbatim. */
function pageHtml(gatewayUrl: string, key: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Video gateway from another origin</title></head>
<body><h1>Video gateway from another origin</h1><progress id="bar" max="100" value="0"></progress><pre id="log"></pre>
<script type="module">
const gateway = ${JSON.stringify(gatewayUrl)};
const headers = { authorization: 'Bearer ' + ${JSON.stringify(key)} };
const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };
const statuses = [];
try {
  const created = await fetch(gateway + '/videos', {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
    body: JSON.stringify({ prompt: 'A tiger walking in snow, from a browser' }),
  });
  const video = await created.json();
  const location = created.headers.get('location');
  const requestId = created.headers.get('x-request-id');
  log(created.status + ' ' + video.id + ' ' + location);
  const { token } = await (await fetch(gateway + '/videos/' + video.id + '/stream-tokens', { method: 'POST', headers })).json();
  const events = new EventSource(gateway + '/videos/' + video.id + '/events?token=' + encodeURIComponent(token));
  events.addEventListener('status', (event) => {
    const current = JSON.parse(event.data);
    statuses.push(current.status);
    log('status: ' + current.status);
    document.getElementById('bar').value = { queued: 10, processing: 50, completed: 100, failed: 100 }[current.status];
    if (current.status === 'completed' || current.status === 'failed') {
      events.close();
      window.outcome = { status: current.status, statuses, location, requestId };
    }
  });
  events.onerror = () => log('stream interrupted; EventSource reconnects');
} catch (error) {
  window.outcome = { error: String(error), statuses };
}
</script></body></html>`;
}
