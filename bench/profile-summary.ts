// Where a CPU profile's time went, grouped the way issue 9 asks (helmet, rate limit, logger, metrics,
// validation, header writes, fastify core, idle …), so the same analysis runs before and after a change:
//   npx tsx bench/profile-summary.ts <file.cpuprofile> [--from-ms N] [--to-ms N] [--top N]
// (--from-ms/--to-ms: a window relative to the profile's start, e.g. only the time under load)
// Self time of a native frame (no URL: a builtin or C++ binding) counts for the nearest caller that has one,
// so `writev` lands in "node http & net" and a SHA-256 digest in "key check (crypto)". "app code": src/, routes/,
// schemas/ and bench/ (the baseline).
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const CpuProfile = Type.Object({
  nodes: Type.Array(
    Type.Object({
      id: Type.Number(),
      callFrame: Type.Object({ functionName: Type.String(), url: Type.String(), lineNumber: Type.Number() }),
      children: Type.Optional(Type.Array(Type.Number())),
    }),
  ),
  startTime: Type.Number(),
  endTime: Type.Number(),
  samples: Type.Array(Type.Number()),
  timeDeltas: Type.Array(Type.Number()),
});
export type CpuProfile = Static<typeof CpuProfile>;
type ProfileNode = CpuProfile['nodes'][number];

/** Building and validating response headers; `parserOnHeadersComplete` reads the request's. */
const headerFunction = /^(?!parser).*(header|writeHead|checkIsHttpToken)/i;
const headerFiles = /^node:_http_(outgoing|server|common)$|\/fastify\/lib\/reply\.js$/;

/** First match wins; tested against the URL of the frame the time is attributed to. */
const groups: ReadonlyArray<[group: string, url: RegExp]> = [
  ['helmet', /\/node_modules\/(@fastify\/helmet|helmet)\//],
  ['rate limit', /\/node_modules\/@fastify\/rate-limit\/|\/src\/http\/client-rate-limits\./],
  [
    'logger',
    /\/node_modules\/(pino[\w-]*|@pinojs\/[\w-]+|sonic-boom|thread-stream|fast-redact|on-exit-leak-free|abstract-logging)\/|\/src\/lib\/(logger|log-redaction)\.|\/fastify\/lib\/logger/,
  ],
  ['metrics', /\/node_modules\/(prom-client|tdigest|bintrees)\/|\/src\/metrics\.|\/routes\/metrics\./],
  [
    'validation',
    /\/node_modules\/(ajv[\w-]*|@fastify\/ajv-compiler|fast-uri|@sinclair\/typebox)\/|\/src\/http\/validation\.|\/fastify\/lib\/validation\.js$/,
  ],
  ['serialization', /\/node_modules\/(fast-json-stringify|@fastify\/fast-json-stringify-compiler|json-schema-ref-resolver)\//],
  ['key check (crypto)', /^node:(internal\/)?crypto|\/src\/auth\//],
  ['app code', /^(?!.*\/node_modules\/).*\/(src|routes|schemas|bench)\/[^/]+/],
  [
    'fastify core',
    /\/node_modules\/(fastify|find-my-way|avvio|light-my-request|fastify-plugin|@fastify\/[\w-]+|proxy-addr|toad-cache|fast-querystring|fast-decode-uri-component|secure-json-parse|process-warning|rfdc|safe-regex2|ret)\//,
  ],
  ['node http & net', /^node:(_http_\w+|net|stream|internal\/(streams?|http|net|stream_base_commons))/],
  ['node other', /^node:/],
  ['other libraries', /./],
];

const special: Record<string, string> = {
  '(idle)': 'idle',
  '(garbage collector)': 'garbage collector',
  '(program)': 'V8/native (unattributed)',
  '(root)': 'V8/native (unattributed)',
};

function groupOf(frame: ProfileNode['callFrame']): string {
  const named = special[frame.functionName];
  if (named !== undefined) return named;
  if (headerFunction.test(frame.functionName) && headerFiles.test(frame.url)) return 'header writes';
  return groups.find(([, url]) => url.test(frame.url))?.[0] ?? 'other libraries';
}

export interface ProfileSummary {
  totalMs: number;
  samples: number;
  groups: Array<{ group: string; ms: number }>;
  functions: Array<{ name: string; where: string; group: string; ms: number }>;
}

export interface ProfileWindow {
  /** Relative to the profile's start. */
  fromMs?: number;
  toMs?: number;
}

export function summarizeProfile(profile: CpuProfile, window: ProfileWindow = {}): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  /** The node whose file decides the group: itself, or its nearest caller with a URL. */
  const attributed = (node: ProfileNode): ProfileNode => {
    let current: ProfileNode | undefined = node;
    while (current !== undefined && current.callFrame.url === '' && special[current.callFrame.functionName] === undefined) {
      const parent = parentOf.get(current.id);
      current = parent === undefined ? undefined : byId.get(parent);
    }
    return current ?? node;
  };

  const fromMs = window.fromMs ?? 0;
  const toMs = window.toMs ?? Number.POSITIVE_INFINITY;
  const selfMs = new Map<number, number>();
  let atMs = 0;
  let totalMs = 0;
  let samples = 0;
  profile.samples.forEach((id, index) => {
    atMs += (profile.timeDeltas[index] ?? 0) / 1000;
    if (atMs < fromMs || atMs > toMs) return;
    // A sample lasts until the next one.
    const ms = (profile.timeDeltas[index + 1] ?? 0) / 1000;
    totalMs += ms;
    samples += 1;
    selfMs.set(id, (selfMs.get(id) ?? 0) + ms);
  });
  const groupMs = new Map<string, number>();
  const functionMs = new Map<string, { name: string; where: string; group: string; ms: number }>();
  for (const [id, ms] of selfMs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const group = groupOf(attributed(node).callFrame);
    groupMs.set(group, (groupMs.get(group) ?? 0) + ms);
    const { functionName, url, lineNumber } = node.callFrame;
    const where =
      url === ''
        ? '(native)'
        : `${url.replace(/^file:\/\/.*?\/node_modules\//, '').replace(/^file:\/\/.*?\/(dist\/)?/, '')}:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const entry = functionMs.get(key) ?? { name: functionName === '' ? '(anonymous)' : functionName, where, group, ms: 0 };
    entry.ms += ms;
    functionMs.set(key, entry);
  }
  const byMs = <T extends { ms: number }>(a: T, b: T): number => b.ms - a.ms;
  return {
    totalMs,
    samples,
    groups: [...groupMs].map(([group, ms]) => ({ group, ms })).sort(byMs),
    functions: [...functionMs.values()].sort(byMs),
  };
}

export function formatSummary(summary: ProfileSummary, topFunctions: number | undefined = 20): string {
  const idleMs = summary.groups.find((entry) => entry.group === 'idle')?.ms ?? 0;
  const busyMs = summary.totalMs - idleMs;
  const percent = (ms: number, of: number): string => `${((100 * ms) / of).toFixed(1).padStart(5)} %`;
  const lines = [
    `CPU profile: ${(summary.totalMs / 1000).toFixed(1)} s, ${summary.samples} samples; busy ${percent(busyMs, summary.totalMs).trim()}`,
    '',
    `${'group'.padEnd(26)}${'of all'.padStart(8)}${'of busy'.padStart(9)}${'ms'.padStart(8)}`,
    ...summary.groups.map(
      ({ group, ms }) =>
        `${group.padEnd(26)}${percent(ms, summary.totalMs).padStart(8)}${(group === 'idle' ? '' : percent(ms, busyMs)).padStart(9)}${ms.toFixed(0).padStart(8)}`,
    ),
    '',
    `top ${topFunctions} functions by self time (of busy):`,
    ...summary.functions
      .filter((entry) => entry.group !== 'idle')
      .slice(0, topFunctions)
      .map(({ name, where, group, ms }) => `${percent(ms, busyMs)}  ${name}  ${where}  [${group}]`),
  ];
  return lines.join('\n');
}

export async function readProfile(file: string): Promise<CpuProfile> {
  const json: unknown = JSON.parse(await readFile(file, 'utf8'));
  if (!Value.Check(CpuProfile, json)) throw new Error(`${file}: not a .cpuprofile`);
  return json;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, ...options] = process.argv.slice(2);
  const option = (name: string): number | undefined => {
    const index = options.indexOf(name);
    return index < 0 ? undefined : Number(options[index + 1]);
  };
  if (file === undefined) {
    process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile> [--from-ms N] [--to-ms N] [--top N]\n');
    process.exit(2);
  }
  const summary = summarizeProfile(await readProfile(file), { fromMs: option('--from-ms'), toMs: option('--to-ms') });
  process.stdout.write(`${formatSummary(summary, option('--top'))}\n`);
}
