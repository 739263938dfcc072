// ESLint flat config: typescript-eslint's type-aware rules, import ordering, and the layer boundaries
// (DESIGN §4; issue 7): domain code never reaches the HTTP layer or Fastify, routes never reach the store or the
// upstream, schemas depend on nothing in src/. These rules are the boundaries' one guard (no test repeats them).
// Formatting is Prettier's (eslint-config-prettier turns off clashes).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import simpleImportSort from 'eslint-plugin-simple-import-sort';
import tseslint from 'typescript-eslint';

const httpLayer = {
  group: ['fastify', 'fastify-plugin', '@fastify/*', '**/http/*', '**/http/**'],
  message: 'Domain code never imports Fastify or the HTTP layer: throw a DomainError and let src/http map it.',
};

export default tseslint.config(
  { ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**', 'examples/typed-client/api.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'simple-import-sort': simpleImportSort },
    rules: {
      'simple-import-sort/imports': 'error',
      'simple-import-sort/exports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Fastify hooks and handlers are async by contract (returning a promise is how they finish), awaiting or not.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**'],
    rules: {
      // tap's `t.test(…)` queues a subtest that tap itself awaits: its promise is safe to leave; any other
      // un-awaited promise in a test is still reported.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
      // `response.json()` is typed `any` by light-my-request: reading a field of a parsed body is what tests do.
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  {
    files: ['src/**', 'routes/**', 'schemas/**'],
    rules: {
      // no-restricted-imports sees only static imports: a dynamic one would slip past the boundaries below.
      'no-restricted-syntax': ['error', { selector: 'ImportExpression', message: 'Import statically, so the layer rules can see it.' }],
    },
  },
  {
    files: ['src/videos/**', 'src/webhooks/**', 'src/upstream/**', 'src/tracking/**', 'src/store/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [httpLayer] }] },
  },
  {
    files: ['routes/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/src/store/**', '**/src/upstream/**'],
              message: 'Routes call services; they never reach the store or the upstream.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['schemas/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/src/**'], message: 'schemas/ is the source of types: it imports nothing from src/.' }] },
      ],
    },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
  prettier,
);
