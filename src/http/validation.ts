import type { TSchema } from '@sinclair/typebox';
import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

/**
 * Validation stays with Ajv (what Fastify ships) but with two deliberate differences from Fastify's
 * defaults: bodies are never type-coerced (a number is not a prompt) and unknown fields are refused
 * rather than silently dropped, so a typo like `aspect_ratio` is reported instead of ignored.
 * Query strings and path params still coerce, because they only ever arrive as text.
 */
export function createValidatorCompiler(sharedSchemas: TSchema[]): FastifySchemaCompiler<TSchema> {
  const build = (coerceTypes: Options['coerceTypes']): Ajv => {
    const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
    addFormats.default(ajv);
    for (const schema of sharedSchemas) ajv.addSchema(schema);
    return ajv;
  };
  const strictAjv = build(false);
  const coercingAjv = build('array');
  return ({ schema, httpPart }) => (httpPart === 'body' ? strictAjv : coercingAjv).compile(schema);
}
