/** The validated, typed configuration the app is built from (DESIGN §5). Durations are milliseconds. */
export interface Config {
  port: number;
  host: string;
  /** null → sandbox mode. */
  elkapiApiKey: string | null;
  elkapiBaseUrl: string;
  /** `DATABASE_URL` as given, e.g. `sqlite:./data/gateway.db` (only `sqlite:` URLs are accepted for now). */
  databaseUrl: string;
  /** Path of the SQLite file (from `DATABASE_URL=sqlite:<path>`), or `:memory:`. */
  sqlitePath: string;
  /** null → `data/clients.json`, created with one `default` client on first start. */
  clientsFile: string | null;
  cacheMaxEntries: number;
  pollIntervalMinMs: number;
  pollIntervalMaxMs: number;
  pollConcurrency: number;
  upstreamMaxRps: number;
  taskTimeoutMs: number;
  webhookTimeoutMs: number;
  webhookRetryScheduleMs: number[];
  webhookAllowHttp: boolean;
  webhookAllowPrivateNetworks: boolean;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  sandbox: {
    durationMs: number;
    queueMs: number;
    errorRate: number;
    latencyMs: number;
  };
}
