import { type Kysely, sql } from 'kysely';

import type { ClaimDeliveriesOptions } from '../records.js';
import type { Database } from '../tables.js';

/** Statuses a dispatcher may claim. */
export const claimableStatuses = ['pending', 'retrying'] as const;

/**
 * The due deliveries a claim may take, as a subquery of `message_id`s, written once for every dialect: due
 * (`pending` / `retrying`, `next_attempt_at <= now`, lease free or expired), none of `excludeHosts`, ranked per
 * receiver (`row_number() over (partition by target_host)`) so a receiver with a thousand overdue events takes at
 * most `perHostLimit` of the batch; with `maxInFlightPerHost`, a receiver's rank plus its deliveries leased right
 * now (by any claimer sharing the database) stays within the cap. Most overdue first, at most `limit`.
 */
export function dueDeliveryIds(db: Kysely<Database>, now: number, options: ClaimDeliveriesOptions) {
  const excluded = options.excludeHosts ?? [];
  const perHostLimit = Math.max(1, Math.floor(options.perHostLimit ?? options.limit));
  const perHostCap = options.maxInFlightPerHost;
  const inFlightByHost = db
    .selectFrom('webhook_deliveries')
    .select((eb) => ['target_host', eb.fn.countAll<number>().as('in_flight')])
    .where('status', 'in', claimableStatuses)
    .where('lease_until', '>', now)
    .where('target_host', 'is not', null)
    .groupBy('target_host');
  const due = db
    .selectFrom('webhook_deliveries as d')
    .$if(perHostCap !== undefined, (query) => query.leftJoin(inFlightByHost.as('f'), 'f.target_host', 'd.target_host'))
    .select((eb) => [
      'd.message_id',
      'd.next_attempt_at',
      eb.fn
        .agg<number>('row_number')
        .over((over) => over.partitionBy('d.target_host').orderBy('d.next_attempt_at').orderBy('d.message_id'))
        .as('host_rank'),
      (perHostCap === undefined ? sql<number>`0` : sql<number>`coalesce(f.in_flight, 0)`).as('host_in_flight'),
    ])
    .where('d.status', 'in', claimableStatuses)
    .where('d.next_attempt_at', '<=', now)
    .where((free) => free.or([free('d.lease_until', 'is', null), free('d.lease_until', '<=', now)]))
    .$if(excluded.length > 0, (query) =>
      query.where((eb) => eb.or([eb('d.target_host', 'is', null), eb('d.target_host', 'not in', excluded)])),
    );
  return db
    .selectFrom(due.as('due'))
    .select('due.message_id')
    .where('due.host_rank', '<=', perHostLimit)
    .$if(perHostCap !== undefined, (query) =>
      query.where((eb) => eb(eb('due.host_rank', '+', eb.ref('due.host_in_flight')), '<=', perHostCap ?? 0)),
    )
    .orderBy('due.next_attempt_at')
    .limit(Math.floor(options.limit));
}
