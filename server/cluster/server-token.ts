/**
 * The server token (k3s's `--token`): one secret every server sharing an etcd datastore is given
 * (`--server-token-file FILE` or DROVER_SERVER_TOKEN, never argv). It is never stored anywhere: the key
 * that seals the cluster's bootstrap data and shared documents in etcd is derived from it with scrypt
 * (memory-hard, so a copy of etcd does not let an attacker try tokens fast), salted per cluster.
 */
import { randomBytes, scrypt, type ScryptOptions } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { KEY_BYTES, type AeadKey } from '../../src/util/aead.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

export const SERVER_TOKEN_ENV = 'DROVER_SERVER_TOKEN';
/** Shorter tokens are refused: the token is the only thing between a reader of etcd and the CA key. */
export const MIN_SERVER_TOKEN_LENGTH = 16;
/** The envelope key id of everything sealed with the derived key. */
export const SERVER_TOKEN_KEY_ID = 'server-token';

/** scrypt parameters, stored beside the salt so a later version may raise them without locking old clusters out. */
export interface KdfParams {
  name: 'scrypt';
  N: number;
  r: number;
  p: number;
  /** base64 */
  salt: string;
}

/** ~100 ms and 32 MiB per derivation (once per server start). */
const DEFAULT_KDF = { N: 2 ** 15, r: 8, p: 1 } as const;

/** The server token is missing, unreadable, too short, or does not open the cluster's data. */
export class ServerTokenError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 400, reason: 'ServerTokenInvalid', cause });
  }
}

export function newKdfParams(): KdfParams {
  return { name: 'scrypt', ...DEFAULT_KDF, salt: randomBytes(16).toString('base64') };
}

/** The AES-256 key `token` stands for under `params`. */
export function deriveKey(token: string, params: KdfParams): Promise<AeadKey> {
  if (params.name !== 'scrypt' || ![params.N, params.r, params.p].every((n) => Number.isInteger(n) && n > 0) || params.N > 2 ** 20 || params.r > 32 || params.p > 16) {
    return Promise.reject(new ServerTokenError(`the bootstrap data names key derivation ${JSON.stringify({ ...params, salt: undefined })}, which this version does not use`));
  }
  const opts: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(token, Buffer.from(params.salt, 'base64'), KEY_BYTES, opts, (err, key) => (err ? reject(new ServerTokenError(`cannot derive the key of the server token: ${err.message}`, err)) : resolve({ id: SERVER_TOKEN_KEY_ID, key })));
  });
}

/**
 * The server token from `file` (checked to be private) or else from DROVER_SERVER_TOKEN, which is
 * removed from the environment once read (no child process inherits it); undefined when neither is given.
 */
export async function readServerToken(o: { file?: string; env?: NodeJS.ProcessEnv; logger?: Logger }): Promise<string | undefined> {
  const env = o.env ?? process.env;
  const fromEnv = env[SERVER_TOKEN_ENV];
  delete env[SERVER_TOKEN_ENV];
  let token: string | undefined;
  if (o.file) {
    try {
      if (((await stat(o.file)).mode & 0o077) !== 0) o.logger?.warn({ path: o.file }, 'the server token file can be read by other users; make it 0600');
      token = (await readFile(o.file, 'utf8')).trim();
    } catch (err) {
      throw new ServerTokenError(`cannot read --server-token-file ${o.file}: ${errorMessage(err)}`, err);
    }
    if (!token) throw new ServerTokenError(`--server-token-file ${o.file} is empty`);
  } else {
    token = fromEnv?.trim() || undefined;
  }
  if (token !== undefined) checkServerToken(token, o.file ? `--server-token-file ${o.file}` : SERVER_TOKEN_ENV);
  return token;
}

/** Throws ServerTokenError naming `source` for a token too short or with control characters. */
export function checkServerToken(token: string, source: string): void {
  if (token.length < MIN_SERVER_TOKEN_LENGTH) {
    throw new ServerTokenError(`the server token (${source}) is ${token.length} characters; use at least ${MIN_SERVER_TOKEN_LENGTH} (e.g. \`openssl rand -hex 32\`)`);
  }
  if (/[\p{Cc}]/u.test(token)) throw new ServerTokenError(`the server token (${source}) holds control characters; use one line of printable characters`);
}
