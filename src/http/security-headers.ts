/**
 * Security headers (helmet) for a JSON API with one HTML page (Swagger UI at /docs).
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

import helmet, { type HelmetOptions } from 'helmet';

/**
 * API responses are data, never documents: a CSP that lets a browser load or frame nothing from them, so a
 * JSON body opened as a page can do no harm. `upgrade-insecure-requests` is left out everywhere: the gateway
 * answers plain http on 127.0.0.1 and, in sandbox mode, on the LAN for phones, where it would break the page.
 */
export const apiHelmetOptions: HelmetOptions = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'none'"],
      frameAncestors: ["'none'"],
    },
  },
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
  // `cross-origin-resource-policy: same-origin` by default; the sandbox's sample media set `cross-origin` themselves.
};

/**
 * The headers helmet sets with these options, computed once at start: none of them depends on the request (no
 * CSP nonces), so every answer gets the same bytes without running helmet's middleware per request (it was ~10 %
 * of the gateway's CPU on the hot path). Computed by helmet itself on a throwaway response, so they stay exactly
 * what helmet would send.
 */
export function staticSecurityHeaders(options: HelmetOptions = apiHelmetOptions): Readonly<Record<string, string>> {
  const response = new ServerResponse(new IncomingMessage(new Socket()));
  const failures: Error[] = [];
  helmet(options)(response.req, response, (error) => {
    if (error !== undefined) failures.push(error instanceof Error ? error : new Error('helmet refused its options'));
  });
  if (failures[0] !== undefined) throw failures[0];
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(response.getHeaders())) if (value !== undefined) headers[name] = String(value);
  return Object.freeze(headers);
}

/**
 * Swagger UI's own CSP (set by @fastify/swagger-ui on its routes, replacing the API one): scripts and styles from
 * this origin only — its page has no inline script — inline styles for its SVG icons, and `connect-src 'self'`
 * for "Try it out".
 */
export const docsContentSecurityPolicy: Record<string, string[]> = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", "'unsafe-inline'"],
};
