import { type SchemaOptions, type TSchema, Type } from '@sinclair/typebox';

/** `T` or `null`: the API sends every field, null when it has no value. */
export const Nullable = <T extends TSchema>(schema: T, options?: SchemaOptions) => Type.Union([schema, Type.Null()], options);

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601, UTC.' });
