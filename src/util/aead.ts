/**
 * AES-256-GCM envelopes for data at rest, in the shape of Kubernetes' EncryptionConfiguration:
 * `k8s:enc:aesgcm:v1:<keyid>:` followed by nonce and ciphertext (here base64 of nonce ‖ ciphertext ‖
 * tag, because the values live inside JSON). The key id in the prefix lets a keyring hold several keys
 * during a rotation; the additional authenticated data binds a ciphertext to where it belongs (its
 * store key, its node), so one copied elsewhere fails to open instead of being read as another object.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { DroverError } from './errors.js';

export const ENVELOPE_PREFIX = 'k8s:enc:aesgcm:v1:';
export const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Key ids go into the prefix, which ':' ends. */
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

export interface AeadKey {
  id: string;
  key: Buffer;
}

/** An envelope that cannot be opened: unknown key, wrong key, tampered or truncated data. */
export class SealError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'DecryptionFailed', cause });
  }
}

export function isValidKeyId(id: string): boolean {
  return KEY_ID.test(id);
}

export function isEnvelope(v: unknown): v is string {
  return typeof v === 'string' && v.startsWith(ENVELOPE_PREFIX);
}

/** The id of the key an envelope was sealed with; undefined when `v` is not an envelope. */
export function envelopeKeyId(v: unknown): string | undefined {
  if (!isEnvelope(v)) return undefined;
  const end = v.indexOf(':', ENVELOPE_PREFIX.length);
  return end < 0 ? undefined : v.slice(ENVELOPE_PREFIX.length, end);
}

export function seal(k: AeadKey, plaintext: Buffer, aad: string): string {
  if (k.key.length !== KEY_BYTES) throw new SealError(`key ${k.id} is ${k.key.length} bytes, AES-256 needs ${KEY_BYTES}`);
  // Random 96-bit nonces: safe for far more writes than a store or a node cache will ever make with one key.
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', k.key, nonce);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return `${ENVELOPE_PREFIX}${k.id}:${body.toString('base64')}`;
}

/**
 * Opens an envelope with the key its prefix names. Throws SealError saying why (the caller adds which
 * object): no such key, or authentication failed (wrong key material, tampered, or moved elsewhere).
 */
export function unseal(keyOf: (id: string) => Buffer | undefined, envelope: string, aad: string): Buffer {
  const id = envelopeKeyId(envelope);
  if (id === undefined) throw new SealError('not an encrypted value (no key id)');
  const key = keyOf(id);
  if (!key) throw new SealError(`it was encrypted with key "${id}", which is not in the keyring`);
  const body = Buffer.from(envelope.slice(ENVELOPE_PREFIX.length + id.length + 1), 'base64');
  if (body.length < NONCE_BYTES + TAG_BYTES) throw new SealError(`its ciphertext is truncated (${body.length} bytes)`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    return Buffer.concat([decipher.update(body.subarray(NONCE_BYTES, body.length - TAG_BYTES)), decipher.final()]);
  } catch (err) {
    throw new SealError(`authentication with key "${id}" failed: wrong key, or the ciphertext was altered or moved from another object`, err);
  }
}
