import t from 'tap';

import { StoreUnavailable } from '../src/errors.js';
import { openPostgresStore } from '../src/store/postgres.js';
import { auth, createVideo, startTestGateway } from './helpers/gateway.js';
import { freshSchema, POSTGRES_HOST, POSTGRES_PORT, postgresOrSkip } from './helpers/postgres.js';
import { startTcpProxy } from './helpers/tcp-proxy.js';
import { until } from './helpers/until.js';

const server = await postgresOrSkip(t);
if (server !== null) {
  t.test('Postgres cut or its connections killed: 503 store_unavailable, /readyz 503, then recovery', async (t) => {
    const { schema, pool: admin } = await freshSchema(t, server);
    const proxy = await startTcpProxy({ host: POSTGRES_HOST, port: POSTGRES_PORT });
    t.teardown(() => proxy.close());
    const applicationName = `gw_${schema}`;
    const url = new URL(server.url(schema));
    url.port = String(proxy.port);
    url.searchParams.set('application_name', applicationName);
    const store = await openPostgresStore({ url: url.toString(), poolSize: 3, connectionTimeoutMs: 1_000 });
    const gateway = await startTestGateway(t, { gateway: { store } });
    const list = () => gateway.app.inject({ method: 'GET', url: '/videos', headers: auth() });
    const ready = async () => (await gateway.app.inject({ method: 'GET', url: '/readyz' })).statusCode;

    const video = await createVideo(gateway);
    t.equal((await list()).statusCode, 200);
    t.equal(await ready(), 200);

    proxy.cut();
    const down = await list();
    t.equal(down.statusCode, 503, 'a request that needs the store answers 503');
    t.equal(down.json<{ code: string }>().code, 'store_unavailable');
    t.equal(down.headers['retry-after'], '5');
    t.notMatch(down.body, /ECONN|terminated|5432|127\.0\.0\.1/, 'no driver text, address or port in the body');
    const create = await gateway.app.inject({
      method: 'POST',
      url: '/videos',
      headers: { ...auth(), 'idempotency-key': 'k-during-outage' },
      payload: { prompt: 'during the outage' },
    });
    t.equal(create.statusCode, 503, 'a create with a key is refused before anything is sent upstream');
    t.equal(await ready(), 503, '/readyz says not ready');
    await t.rejects(gateway.poller.tick(), StoreUnavailable, "the poller's claim fails as store_unavailable");

    proxy.restore();
    await until(async () => (await list()).statusCode === 200, 'requests to succeed again after the cut');
    t.equal(await ready(), 200, 'ready again');
    t.equal(await gateway.poller.tick(), 0, 'the poller claims again (nothing due yet)');
    t.equal((await gateway.app.inject({ method: 'GET', url: `/videos/${video.id}`, headers: auth() })).statusCode, 200, 'nothing was lost');

    // Every connection of this gateway killed server-side, as a failover or an operator would.
    const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [
      applicationName,
    ]);
    t.ok((killed.rowCount ?? 0) > 0, 'the gateway had connections to kill');
    await until(async () => (await list()).statusCode === 200, 'requests to succeed after pg_terminate_backend');
    t.equal(await ready(), 200, 'and the process is still up and ready');
  });
}
