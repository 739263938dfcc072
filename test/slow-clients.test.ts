// Slow and trickling clients over real sockets (issue 13 item 3): the configured timeouts close them, and a
// caller without a valid key never gets to keep a connection open by trickling a body.
import { type AddressInfo, connect, type Socket } from 'node:net';

import t, { type Test } from 'tap';

import { clientKeys, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { until } from './helpers/until.js';

interface RawConnection {
  socket: Socket;
  /** Everything the gateway sent so far. */
  received(): string;
  closed(): boolean;
  /** Writes one byte every `everyMs` until the socket closes (or the test ends). */
  trickle(everyMs: number): void;
}

async function openRaw(t: Test, gw: TestGateway): Promise<RawConnection> {
  if (!gw.app.server.listening) await gw.app.listen({ port: 0, host: '127.0.0.1' });
  const socket = connect((gw.app.server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  let received = '';
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => undefined);
  socket.once('close', () => {
    closed = true;
    clearInterval(timer);
  });
  t.teardown(() => {
    clearInterval(timer);
    socket.destroy();
  });
  return {
    socket,
    received: () => received,
    closed: () => closed,
    trickle(everyMs) {
      timer = setInterval(() => socket.writable && socket.write('x'), everyMs);
    },
  };
}

const postHeaders = (extra = ''): string =>
  'POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 65000\r\n' + `${extra}\r\n`;

// Long enough that a slow machine never trips them in the other tests of this file, short enough to wait for.
const shortTimeouts = { REQUEST_TIMEOUT_MS: '600ms', HEADERS_TIMEOUT_MS: '300ms', KEEP_ALIVE_TIMEOUT_MS: '300ms' };

t.test('a caller without a key gets its 401 before sending the body, and the connection is closed', async (t) => {
  // Default (long) timeouts: the close must come from refusing the unread body, not from a timer.
  const gw = await startTestGateway(t);
  const raw = await openRaw(t, gw);
  raw.socket.write(`${postHeaders()}{"prompt":"A ti`);
  raw.trickle(20);
  await until(() => raw.closed(), 'the gateway to close the unauthenticated connection');
  t.match(raw.received(), /^HTTP\/1\.1 401 /);
  t.match(raw.received(), /\r\nconnection: close\r\n/i);
  t.match(raw.received(), /"code":"unauthorized"/);
  t.equal(gw.sandbox.stats.creates, 0);
});

t.test('a wrong key counts as no key: refused before the body, connection closed', async (t) => {
  const gw = await startTestGateway(t);
  const raw = await openRaw(t, gw);
  raw.socket.write(`${postHeaders('Authorization: Bearer vgk_not_a_real_key_000000000000\r\n')}{`);
  raw.trickle(20);
  await until(() => raw.closed(), 'the gateway to close the connection of a wrong key');
  t.match(raw.received(), /^HTTP\/1\.1 401 /);
});

t.test('an authenticated caller trickling its body is cut off at REQUEST_TIMEOUT_MS with a 408', async (t) => {
  const gw = await startTestGateway(t, { env: shortTimeouts });
  const raw = await openRaw(t, gw);
  raw.socket.write(`${postHeaders(`Authorization: Bearer ${clientKeys.alice}\r\n`)}{"prompt":"A ti`);
  raw.trickle(20);
  await until(() => raw.closed(), 'the request timeout to close the trickling connection');
  t.match(raw.received(), /^HTTP\/1\.1 408 /);
  t.match(raw.received(), /"code":"request_timeout"/);
  t.equal(gw.sandbox.stats.creates, 0, 'nothing half-received reached the upstream');
});

t.test('headers that never finish are cut off at HEADERS_TIMEOUT_MS', async (t) => {
  const gw = await startTestGateway(t, { env: shortTimeouts });
  const raw = await openRaw(t, gw);
  raw.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
  raw.trickle(20);
  await until(() => raw.closed(), 'the headers timeout to close the connection');
  t.match(raw.received(), /^HTTP\/1\.1 408 /);
});

t.test('an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_MS; a prompt client is served normally', async (t) => {
  const gw = await startTestGateway(t, { env: shortTimeouts });
  const raw = await openRaw(t, gw);
  const body = JSON.stringify({ prompt: 'A tiger walking in snow' });
  raw.socket.write(
    'POST /videos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
      `Authorization: Bearer ${clientKeys.alice}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  await until(() => raw.received().includes('"status":"queued"'), 'the 202 of a prompt create');
  t.match(raw.received(), /^HTTP\/1\.1 202 /);
  t.notMatch(raw.received(), /connection: close/i, 'a fully read request keeps its connection');
  await until(() => raw.closed(), 'the keep-alive timeout to close the idle connection');
  t.equal(gw.sandbox.stats.creates, 1);
});

/** The status, headers and parsed body of the one answer on a raw connection. */
function parseAnswer(raw: string): { status: number; headers: Record<string, string>; body: unknown } {
  const [head = '', body = ''] = raw.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(body) as unknown };
}

t.test('what the HTTP parser refuses is a problem with a request id: 431, malformed HTTP, 408', async (t) => {
  const gw = await startTestGateway(t, { env: shortTimeouts });
  const cases: Array<[string, string, number, string]> = [
    ['headers over the size limit', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
    ['a malformed request line', 'GARBAGE\r\n\r\n', 400, 'validation_failed'],
    ['a bad header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'validation_failed'],
    ['headers that never end', 'GET /healthz HTTP/1.1\r\nHost: x\r\n', 408, 'request_timeout'],
  ];
  for (const [name, request, status, code] of cases) {
    const raw = await openRaw(t, gw);
    raw.socket.write(request);
    await until(() => raw.closed(), `the gateway to answer and close: ${name}`);
    const answer = parseAnswer(raw.received());
    t.equal(answer.status, status, name);
    t.equal(answer.headers['content-type'], 'application/problem+json; charset=utf-8', `${name}: problem+json`);
    t.match(answer.headers['x-request-id'], /^req_/, `${name}: carries a request id`);
    t.match(answer.body, { status, code, requestId: answer.headers['x-request-id'] }, `${name}: the body names the same id`);
  }
});
