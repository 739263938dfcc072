import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every `.ts` file under `dir`, as a repository-relative path with `/` separators. */
function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => `${dir}/${file.split('\\').join('/')}`);
}

/** What a file imports (static, dynamic, `export … from`, type-only alike): packages by name, files by repository path. */
function importsOf(file: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
  return importedFiles.map(({ fileName }) =>
    fileName.startsWith('.')
      ? relative(root, resolve(root, dirname(file), fileName))
          .split('\\')
          .join('/')
      : fileName,
  );
}

interface Rule {
  name: string;
  /** Folders whose files the rule covers. */
  from: string[];
  forbidden: (target: string) => boolean;
}

const isFastify = (target: string): boolean => target === 'fastify' || target === 'fastify-plugin' || target.startsWith('@fastify/');
const isUnder = (folder: string) => (target: string) => target.startsWith(`${folder}/`);

const rules: Rule[] = [
  {
    name: 'domain code never imports Fastify or the HTTP layer',
    from: ['src/videos', 'src/webhooks', 'src/upstream', 'src/tracking', 'src/store'],
    forbidden: (target) => isFastify(target) || isUnder('src/http')(target),
  },
  {
    name: 'routes reach services, never the store or the upstream',
    from: ['routes'],
    forbidden: (target) => isUnder('src/store')(target) || isUnder('src/upstream')(target),
  },
  { name: 'schemas import nothing from src', from: ['schemas'], forbidden: isUnder('src') },
];

/** Known exceptions, `file → imported file`: none. A new one needs a reason written here. */
const allowed = new Set<string>([]);

t.test('layer boundaries hold', async (t) => {
  const allowedSeen = new Set<string>();
  for (const rule of rules) {
    const violations: string[] = [];
    for (const file of rule.from.flatMap(sourceFiles)) {
      for (const target of importsOf(file).filter(rule.forbidden)) {
        const edge = `${file} → ${target}`;
        if (allowed.has(edge)) allowedSeen.add(edge);
        else violations.push(edge);
      }
    }
    t.same(violations, [], rule.name);
  }
  t.same(
    [...allowed].filter((edge) => !allowedSeen.has(edge)),
    [],
    'every allowed exception still exists (remove the ones that do not)',
  );
});

t.test('the import scan sees what a rule must catch', async (t) => {
  const scanned = importsOf('src/http/app-plugin.ts');
  t.ok(scanned.includes('fastify-plugin'), 'packages by name');
  t.ok(scanned.includes('@fastify/helmet'), 'scoped packages');
  t.ok(scanned.includes('routes/videos.js'), 'relative files by repository path');
  t.ok(scanned.includes('src/services.js'), 'type-only imports too');
  t.ok(rules[0]?.forbidden('src/http/problems.js'), 'the HTTP layer is forbidden to domain code');
  t.notOk(rules[0]?.forbidden('src/errors.js'), 'the domain errors are not');
});
