/*
 * Secrets at rest, the same for every backend: with a ValueCipher (server/secrets/keyring.ts) a
 * Secret is stored as one string, `k8s:enc:aesgcm:v1:<keyid>:<base64>`, the whole serialized object
 * encrypted with AAD = where it is stored (its object key, server/store/keys.ts, or a LevelStore
 * change-log key), so a ciphertext moved to another place does not open. Plain Secrets (from before
 * encryption) still read.
 */
import type { ApiObject } from '../../src/api/meta.js';
import { isEnvelope } from '../../src/util/aead.js';
import { StoreError, errorMessage } from '../../src/util/errors.js';
import { parseObjectKey, what } from './keys.js';
import type { ValueCipher } from './types.js';

export const ENCRYPTED_KIND = 'Secret';

export class SecretCodec {
  constructor(readonly cipher: ValueCipher | undefined) {}

  /** Whether `obj` is stored sealed. */
  seals(obj: ApiObject): boolean {
    return obj.kind === ENCRYPTED_KIND && this.cipher !== undefined;
  }

  /** The stored form of `obj` under `aad`: a sealed string for a Secret when there is a cipher, else `obj`. */
  encode(aad: string, obj: ApiObject): ApiObject | string {
    if (!this.seals(obj)) return obj;
    return this.cipher!.seal(Buffer.from(JSON.stringify(obj), 'utf8'), aad);
  }

  /** `name` says which object, for errors: the Secret's own name, never garbage or a bare crypto error. */
  open(envelope: string, aad: string, name: string): ApiObject {
    if (!this.cipher) throw new StoreError(`store: ${name} is encrypted but the store was opened without the secrets keyring`);
    try {
      return JSON.parse(this.cipher.unseal(envelope, aad).toString('utf8')) as ApiObject;
    } catch (err) {
      throw new StoreError(`store: cannot decrypt ${name}: ${errorMessage(err)}`, err);
    }
  }

  /** An object as read from its object key: opened when sealed. */
  decodeObject(key: string, raw: unknown): unknown {
    if (!isEnvelope(raw)) return raw;
    const ref = parseObjectKey(key);
    return this.open(raw, key, ref ? what(ref.kind, ref.namespace, ref.name) : key);
  }
}
