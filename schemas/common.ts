import { type SchemaOptions, type Static, type TSchema, type TUnsafe, Type } from '@sinclair/typebox';

/** `T` or `null`: the API sends every field, null when it has no value. */
export const Nullable = <T extends TSchema>(schema: T, options?: SchemaOptions) => Type.Union([schema, Type.Null()], options);

/**
 * A `$ref` to a shared schema (registered by its `$id`) that keeps the schema's static type, as TypeBox's
 * deprecated `Type.Ref(schema)` did: responses typed from it need no hand-written twin.
 */
export function RefTo<T extends TSchema>(schema: T): TUnsafe<Static<T>> {
  if (schema.$id === undefined) throw new Error('RefTo needs a schema with an $id');
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id));
}

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601, UTC.' });
