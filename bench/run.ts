// `npm run bench`: the figures of issue 9, every side in its own process (the built gateway, the bare Fastify
// baseline, the load generator, the upstream simulator, a webhook receiver, the waiting clients), printed as one
// table and written into the README's "Performance" section with bench/results.svg.
//   --quick        figures 1–2 with 1 s rounds (~40 s), printed only
//   --only 3,5     just those figures, printed only
//   --profile      CPU profiles of the gateway and the baseline under the cached-GET load, summarised by
//                  bench/profile-summary.ts
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { economyFigure } from './figures/economy.js';
import { httpFigures, type RoundOptions, setUpHttp } from './figures/http.js';
import { inFlightFigure } from './figures/in-flight.js';
import { profileGateway } from './figures/profile.js';
import { waitersFigure } from './figures/waiters.js';
import { webhooksFigure } from './figures/webhooks.js';
import { wrkInstalled } from './lib/load.js';
import { runToEnd, stopAll } from './lib/processes.js';
import { type Bar, barChartSvg, markdownTable, type Row, writeIntoReadme } from './lib/report.js';

const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, profile: { type: 'boolean', default: false } },
});
const quick = args.quick;
const only = args.only === undefined ? null : new Set(args.only.split(',').map(Number));
const rounds: RoundOptions = quick
  ? { rounds: 3, seconds: 1, warmupSeconds: 1, pacedRounds: 1 }
  : { rounds: 3, seconds: 5, warmupSeconds: 2, pacedRounds: 3 };

const started = Date.now();
const loadAtStart = loadavg()[0] ?? Number.NaN;
const log = (line: string): void =>
  void process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);

/** Newest modification time under the folders the build compiles. */
async function newestSource(folders: readonly string[]): Promise<number> {
  let newest = 0;
  for (const folder of folders) {
    for (const entry of await readdir(folder, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) newest = Math.max(newest, (await stat(join(entry.parentPath, entry.name))).mtimeMs);
    }
  }
  return newest;
}

/** The gateway is measured as users run it: built. Skipped when dist is newer than every source. */
async function buildIfStale(): Promise<void> {
  const built = await stat('dist/src/server.js').then(
    (entry) => entry.mtimeMs,
    () => 0,
  );
  if (built > (await newestSource(['src', 'routes', 'schemas']))) return;
  log('building (npm run build)');
  await runToEnd('build', 'npm', ['run', 'build']);
}

async function main(): Promise<void> {
  const workDir = await mkdtemp(join(tmpdir(), 'bench-'));
  try {
    await buildIfStale();
    if (args.profile) {
      const profileDir = join(tmpdir(), 'gateway-profiles');
      await mkdir(profileDir, { recursive: true });
      process.stdout.write(`${await profileGateway(workDir, profileDir, log)}\n`);
      return;
    }
    const wanted = (figure: number): boolean => (only === null ? !quick || figure <= 2 : only.has(figure));
    const rows: Row[] = [];
    const bars: Bar[] = [];
    if (wanted(1) || wanted(2)) {
      log(
        `figures 1–2: ${rounds.rounds} paired rounds of ${rounds.seconds} s per scenario, ${wrkInstalled ? 'wrk -t1 -c32' : 'autocannon -c32'}`,
      );
      const http = await setUpHttp(workDir);
      try {
        const result = await httpFigures(http, rounds);
        rows.push(...result.rows);
        bars.push(...result.bars);
      } finally {
        await http.stop();
      }
    }
    const others: Array<[number, string, (log: (line: string) => void) => Promise<Row[]>]> = [
      [3, 'figure 3: 10,000 videos in flight', inFlightFigure],
      [4, 'figure 4: upstream queries per video (~70 s)', economyFigure],
      [5, 'figure 5: webhooks', webhooksFigure],
      [6, 'figure 6: 10,000 waiters', waitersFigure],
    ];
    for (const [figure, title, run] of others) {
      if (!wanted(figure)) continue;
      log(title);
      rows.push(...(await run(log)));
    }

    const table = markdownTable(rows);
    process.stdout.write(`\n${table}\n\n`);
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    if (!quick && only === null) {
      await writeFile('bench/results.svg', barChartSvg(bars, 'Requests per second, median of paired rounds (higher is better)'));
      const machine =
        `Taken ${new Date().toISOString().slice(0, 10)} on ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ` +
        `Node ${process.version}, load by ${wrkInstalled ? 'wrk' : 'autocannon'}; load average ${loadAtStart.toFixed(1)} at the start, ` +
        `${(loadavg()[0] ?? Number.NaN).toFixed(1)} at the end (${((Date.now() - started) / 1000).toFixed(0)} s).`;
      await writeIntoReadme('README.md', `${table}\n\n${machine}\n\n![Requests per second, gateway and baseline](bench/results.svg)`);
      log('wrote the table into README.md and the chart into bench/results.svg');
    }
  } finally {
    await stopAll();
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
