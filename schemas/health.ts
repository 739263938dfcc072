import { type Static, Type } from '@sinclair/typebox';

export const Liveness = Type.Object({ status: Type.Literal('ok') }, { $id: 'Liveness', examples: [{ status: 'ok' }] });

export const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
    checks: Type.Object({
      store: Type.Union([Type.Literal('ok'), Type.Literal('failing')]),
      upstreamAuth: Type.Union([Type.Literal('ok'), Type.Literal('refused')], {
        description: '`refused` when the upstream rejects the gateway key (401/403): fix `ELKAPI_API_KEY`.',
      }),
      upstreamCircuit: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')], {
        description:
          '`open` after repeated upstream outages (5xx, network, timeouts): `POST /videos` answers 503 until it closes; ' +
          '`half_open`: the next upstream call is a probe that closes or reopens it.',
      }),
    }),
  },
  {
    $id: 'Readiness',
    examples: [
      { status: 'ready', checks: { store: 'ok', upstreamAuth: 'ok', upstreamCircuit: 'closed' } },
      { status: 'not_ready', checks: { store: 'failing', upstreamAuth: 'ok', upstreamCircuit: 'open' } },
    ],
  },
);
export type Readiness = Static<typeof Readiness>;
