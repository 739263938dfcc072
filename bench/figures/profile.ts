// `npm run bench -- --profile`: the gateway, then the baseline, under the cached-GET load of figure 1, each run
// with `node --cpu-prof`. A first gateway creates and completes the video; the profiled one starts on the same
// database, and only the measured window of each profile is summarised (no start-up, no warm-up).
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { writeBodies } from '../lib/bodies.js';
import { authHeaders, benchKeySha256, createVideo, readVideoUntil, startGateway } from '../lib/gateway.js';
import { runLoad } from '../lib/load.js';
import { freePort, startProcess, tsxArgs } from '../lib/processes.js';
import { throughput } from '../lib/report.js';
import { formatSummary, readProfile, summarizeProfile } from '../profile-summary.js';

const warmupSeconds = 3;
const loadSeconds = 10;

interface Profiled {
  url: string;
  stop(): Promise<void>;
}

/** Node names profiles `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`; tsx's loader thread writes one too. */
async function mainThreadProfile(dir: string): Promise<string> {
  const file = (await readdir(dir)).find((name) => /\.\d+\.0\.\d+\.cpuprofile$/.test(name));
  if (file === undefined) throw new Error(`${dir}: no main-thread profile`);
  return join(dir, file);
}

async function profileUnderLoad(
  label: string,
  dir: string,
  start: (nodeArgs: string[]) => Promise<Profiled>,
  log: (line: string) => void,
): Promise<string> {
  const spawnedAt = Date.now();
  const target = await start(['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  await runLoad({ url: target.url, headers: authHeaders, connections: 32, seconds: warmupSeconds });
  const fromMs = Date.now() - spawnedAt;
  log(`profiling the ${label}: ${loadSeconds} s of the cached GET`);
  const load = await runLoad({ url: target.url, headers: authHeaders, connections: 32, seconds: loadSeconds });
  const toMs = Date.now() - spawnedAt;
  await target.stop();
  const file = await mainThreadProfile(dir);
  return [
    `${label}: ${throughput(load.requestsPerSecond, load.p99Ms)} while profiled`,
    `(rerun: npx tsx bench/profile-summary.ts ${file} --from-ms ${fromMs} --to-ms ${toMs})`,
    '',
    formatSummary(summarizeProfile(await readProfile(file), { fromMs, toMs })),
  ].join('\n');
}

export async function profileGateway(workDir: string, profileDir: string, log: (line: string) => void): Promise<string> {
  const sandboxEnv = { SANDBOX_DURATION_MS: '1s', SANDBOX_QUEUE_MS: '200ms' };
  const first = await startGateway({ name: 'gateway (setup)', env: sandboxEnv, keepDatabase: true });
  const finished = await readVideoUntil(first.url, (await createVideo(first.url)).id, (current) => current.status === 'completed');
  await first.stop();
  const stamp = new Date().toISOString().replaceAll(':', '-');
  const path = `/videos/${finished.video.id}`;
  try {
    const gateway = await profileUnderLoad(
      'gateway',
      join(resolve(profileDir), `gateway-${stamp}`),
      async (nodeArgs) => {
        const started = await startGateway({
          name: 'gateway (profiled)',
          env: { ...sandboxEnv, DATABASE_URL: `sqlite:${first.dbPath}` },
          nodeArgs,
        });
        return { url: `${started.url}${path}`, stop: () => started.stop() };
      },
      log,
    );

    const bodiesFile = join(workDir, 'profile-bodies.json');
    await writeBodies(bodiesFile, {
      keySha256: benchKeySha256,
      videos: { [finished.video.id]: { body: finished.body, etag: finished.etag } },
      list: '[]',
    });
    const baseline = await profileUnderLoad(
      'baseline',
      join(resolve(profileDir), `baseline-${stamp}`),
      async (nodeArgs) => {
        const { process: child, match } = await startProcess({
          name: 'baseline (profiled)',
          command: process.execPath,
          args: tsxArgs('bench/baseline.ts', nodeArgs),
          env: { BASELINE_BODIES_FILE: bodiesFile, PORT: String(await freePort()) },
          ready: /baseline listening on (http:\/\/\S+)/,
        });
        return { url: `${match[1] ?? ''}${path}`, stop: () => child.stop() };
      },
      log,
    );
    return `${gateway}\n\n${baseline}`;
  } finally {
    await first.removeDatabase();
  }
}
