/*
 * Conventions every route follows without repeating them (DESIGN §2.4):
 *   - unknown query parameters are a 400 `validation_failed` naming them: each documented route's querystring
 *     refuses additional properties, and a route that declares none accepts none;
 *   - a known path asked with a method it does not serve is a 405 `method_not_allowed` with `Allow`.
 */
import { Type } from '@sinclair/typebox';
import type { RouteOptions } from 'fastify';

/** The querystring of a route that takes no query parameters. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

type Schema = Record<string | symbol, unknown>;
const isSchema = (value: unknown): value is Schema => typeof value === 'object' && value !== null;

/**
 * Makes the route's querystring strict (an `onRoute` hook, before the docs read it). Routes the docs hide
 * (Swagger UI's own files, sandbox assets) are left alone: browsers add cache-busting parameters to those.
 */
export function strictQuerystring(route: RouteOptions): void {
  const schema = route.schema as Schema | undefined;
  if (schema === undefined || schema['hide'] === true) return;
  const querystring = schema['querystring'];
  if (querystring === undefined) schema['querystring'] = NoQuery;
  else if (isSchema(querystring) && querystring['type'] === 'object' && querystring['additionalProperties'] === undefined) {
    // A copy (symbol keys included): a TypeBox schema may be shared by several routes.
    schema['querystring'] = { ...querystring, additionalProperties: false };
  }
}

const methodsOf = (route: RouteOptions): string[] => (Array.isArray(route.method) ? route.method : [route.method]);

/** Route patterns → the methods served there, to answer a wrong method with 405 and `Allow`. */
export interface MethodIndex {
  add(route: RouteOptions): void;
  /** The methods served at this concrete path (no query), sorted; empty when no route has this path. */
  allowed(path: string): string[];
  /** Whether a catch-all route serves this method on every path (CORS preflights: `OPTIONS *`), so it is never a 405. */
  servedEverywhere(method: string): boolean;
}

const patternToRegExp = (url: string): RegExp => {
  const body = url
    .split('/')
    .map((segment) => {
      if (segment === '*') return '.*';
      if (segment.startsWith(':')) return '[^/]+';
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${body}/?$`);
};

export function createMethodIndex(): MethodIndex {
  const routes = new Map<string, { pattern: RegExp; methods: Set<string> }>();
  const everywhere = new Set<string>();
  return {
    add(route) {
      // A catch-all (CORS preflights register `OPTIONS *`) says nothing about which paths exist.
      if (route.url === '*' || route.url === '/*') {
        for (const method of methodsOf(route)) everywhere.add(method.toUpperCase());
        return;
      }
      const entry = routes.get(route.url) ?? { pattern: patternToRegExp(route.url), methods: new Set<string>() };
      for (const method of methodsOf(route)) entry.methods.add(method.toUpperCase());
      routes.set(route.url, entry);
    },
    allowed(path) {
      const methods = new Set<string>();
      for (const { pattern, methods: served } of routes.values()) if (pattern.test(path)) for (const method of served) methods.add(method);
      return [...methods].sort();
    },
    servedEverywhere: (method) => everywhere.has(method.toUpperCase()),
  };
}
