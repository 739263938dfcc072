/**
 * Security headers (@fastify/helmet) for a JSON API with one HTML page (Swagger UI at /docs).
 */
import type { FastifyHelmetOptions } from '@fastify/helmet';

/**
 * API responses are data, never documents: a CSP that lets a browser load or frame nothing from them, so a
 * JSON body opened as a page can do no harm. `upgrade-insecure-requests` is left out everywhere: the gateway
 * answers plain http on 127.0.0.1 and, in sandbox mode, on the LAN for phones, where it would break the page.
 */
export const apiHelmetOptions: FastifyHelmetOptions = {
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
