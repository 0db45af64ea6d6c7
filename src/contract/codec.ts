import type { z } from 'zod';
import { parseWith } from '../api/validate.js';
import { ValidationError } from '../util/errors.js';
import { MAX_PAYLOAD_BYTES } from './payloads.js';

export function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** Size check, JSON parse and schema validation of one MQTT payload; errors name the cause. */
export function decode<S extends z.ZodType>(schema: S, payload: Buffer, what: string): z.infer<S> {
  if (payload.length > MAX_PAYLOAD_BYTES) {
    throw new ValidationError([{ field: '', message: `payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}` }], `invalid ${what}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    throw new ValidationError([{ field: '', message: `not JSON: ${(err as Error).message}` }], `invalid ${what}`);
  }
  return parseWith(schema, json, what);
}
