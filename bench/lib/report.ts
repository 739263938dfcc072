// One table for the terminal and the README, and a hand-written SVG bar chart (no chart dependency for six bars).
import { readFile, writeFile } from 'node:fs/promises';

import { format, resolveConfig } from 'prettier';

export interface Row {
  figure: string;
  gateway: string;
  baseline: string;
  ratio: string;
  goal: string;
  /** null: no goal to meet (reported only). */
  met: boolean | null;
}

/** Throughput of one scenario on both sides, for the chart. */
export interface Bar {
  label: string;
  gateway: number;
  baseline: number;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
export const formatInteger = (value: number): string => (Number.isFinite(value) ? integer.format(value) : 'n/a');
export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} s`;
  return `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;
}
export const formatRatio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a');
export const throughput = (requestsPerSecond: number, p99Ms: number): string =>
  `${formatInteger(requestsPerSecond)} req/s, p99 ${formatMs(p99Ms)}`;

const cell = (text: string): string => text.replaceAll('|', '\\|');

export function markdownTable(rows: readonly Row[]): string {
  const lines = ['| figure | gateway | baseline | ratio | goal | met? |', '|---|---|---|---|---|---|'];
  for (const row of rows) {
    const met = row.met === null ? '—' : row.met ? 'yes' : '**no**';
    lines.push(`| ${[row.figure, row.gateway, row.baseline, row.ratio, row.goal, met].map(cell).join(' | ')} |`);
  }
  return lines.join('\n');
}

const escapeXml = (text: string): string => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** Horizontal bars, gateway above baseline per scenario, on one req/s scale. */
export function barChartSvg(bars: readonly Bar[], title: string): string {
  const width = 720;
  const labelWidth = 230;
  const barHeight = 16;
  const groupHeight = 2 * barHeight + 18;
  const top = 40;
  const height = top + bars.length * groupHeight + 30;
  const scale = Math.max(1, ...bars.flatMap((bar) => [bar.gateway, bar.baseline]));
  const plotWidth = width - labelWidth - 90;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
  ];
  bars.forEach((bar, index) => {
    const y = top + index * groupHeight;
    const ratio = bar.baseline > 0 ? ` (${formatRatio(bar.gateway / bar.baseline)})` : '';
    parts.push(`<text x="10" y="${y + barHeight + 4}">${escapeXml(`${bar.label}${ratio}`)}</text>`);
    for (const [row, value, color, name] of [
      [0, bar.gateway, '#d9622b', 'gateway'],
      [1, bar.baseline, '#4a7ab5', 'baseline'],
    ] as const) {
      const barY = y + row * barHeight;
      const barWidth = Math.max(1, (value / scale) * plotWidth);
      parts.push(
        `<rect x="${labelWidth}" y="${barY}" width="${barWidth.toFixed(1)}" height="${barHeight - 2}" fill="${color}"><title>${name}</title></rect>`,
      );
      parts.push(`<text x="${(labelWidth + barWidth + 6).toFixed(1)}" y="${barY + barHeight - 4}">${formatInteger(value)}</text>`);
    }
  });
  const legendY = height - 12;
  parts.push(
    `<rect x="${labelWidth}" y="${legendY - 10}" width="12" height="12" fill="#d9622b"/><text x="${labelWidth + 18}" y="${legendY}">gateway</text>`,
  );
  parts.push(
    `<rect x="${labelWidth + 90}" y="${legendY - 10}" width="12" height="12" fill="#4a7ab5"/><text x="${labelWidth + 108}" y="${legendY}">bare Fastify baseline</text>`,
  );
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

export const readmeStart = '<!-- bench:start (written by npm run bench) -->';
export const readmeEnd = '<!-- bench:end -->';

/** Replaces what lies between the README's bench markers, formatted as `npm run lint` expects. */
export async function writeIntoReadme(readmePath: string, content: string): Promise<void> {
  const readme = await readFile(readmePath, 'utf8');
  const start = readme.indexOf(readmeStart);
  const end = readme.indexOf(readmeEnd);
  if (start < 0 || end < start) throw new Error(`${readmePath}: no ${readmeStart} … ${readmeEnd} markers`);
  const updated = `${readme.slice(0, start + readmeStart.length)}\n${content}\n${readme.slice(end)}`;
  const options = (await resolveConfig(readmePath)) ?? {};
  await writeFile(readmePath, await format(updated, { ...options, filepath: readmePath }));
}
