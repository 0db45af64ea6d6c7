/**
 * The node's own credential, kept under STATE_DIR/credentials (0700): the cluster CA, the node's
 * private key (made on this device, never sent anywhere), its certificate, and where to reach the
 * server. Once these exist the agent never uses the join token again.
 */
import { X509Certificate, createPublicKey } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DroverError } from '../src/util/errors.js';

export interface AgentCredentials {
  node: string;
  /** https URL of the server's API (join, renew). */
  apiUrl: string;
  /** The broker the server advertised. */
  mqttUrl: string;
  ca: string;
  key: string;
  cert: string;
  /** The node's password on a plain (--insecure) broker listener. */
  mqttPassword?: string;
  /** False while the server waits for `drover node approve`. */
  approved: boolean;
}

export const CREDENTIALS_DIR = 'credentials';

interface Meta {
  node: string;
  apiUrl: string;
  mqttUrl: string;
  mqttPassword?: string;
  approved: boolean;
}

export function credentialsDir(stateDir: string): string {
  return join(stateDir, CREDENTIALS_DIR);
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DroverError(`cannot read ${path}: ${(err as Error).message}`, { code: 500, reason: 'CredentialsUnreadable', cause: err });
  }
}

/** The stored credential, or undefined when this device has not joined yet. */
export async function loadCredentials(stateDir: string): Promise<AgentCredentials | undefined> {
  const dir = credentialsDir(stateDir);
  const [ca, key, cert, metaText] = await Promise.all(['ca.crt', 'node.key', 'node.crt', 'node.json'].map((f) => readOptional(join(dir, f))));
  if (!ca || !key || !cert || !metaText) return undefined;
  let meta: Meta;
  try {
    meta = JSON.parse(metaText) as Meta;
  } catch (err) {
    throw new DroverError(`${join(dir, 'node.json')} is not valid JSON; remove ${dir} and join again`, { code: 500, reason: 'CredentialsUnreadable', cause: err });
  }
  return { ...meta, ca, key, cert };
}

async function put(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

async function ensureDir(stateDir: string): Promise<string> {
  const dir = credentialsDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (((await stat(dir)).mode & 0o077) !== 0) await chmod(dir, 0o700);
  return dir;
}

/**
 * The key a join (`node.key`) or a renewal (`renew.key`) asks a certificate for, made on this device
 * and kept (0600) until the certificate arrives: when an answer is lost, the next attempt proves with
 * the same key that it is the same device, and the server issues again instead of refusing.
 */
export async function pendingKey(stateDir: string, which: 'node' | 'renew'): Promise<{ key: string; publicKey: string }> {
  const path = join(await ensureDir(stateDir), `${which}.key`);
  let key = await readOptional(path);
  if (!key) {
    // node-forge comes with the key generator: loaded only when a key is made (join, renewal), not by every running agent.
    const { generateKeyPem } = await import('../server/pki/x509.js');
    key = generateKeyPem().privateKey;
    await put(path, key);
  }
  return { key, publicKey: createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString() };
}

/** The renewal key became the node key: the pending one is gone. */
export async function dropRenewalKey(stateDir: string): Promise<void> {
  await rm(join(credentialsDir(stateDir), 'renew.key'), { force: true });
}

/** Stores a credential (all files 0600 in a 0700 directory); the certificate last, so a torn write reads as "not joined". */
export async function saveCredentials(stateDir: string, c: AgentCredentials): Promise<void> {
  const dir = await ensureDir(stateDir);
  const meta: Meta = { node: c.node, apiUrl: c.apiUrl, mqttUrl: c.mqttUrl, mqttPassword: c.mqttPassword, approved: c.approved };
  await put(join(dir, 'ca.crt'), c.ca);
  await put(join(dir, 'node.key'), c.key);
  await put(join(dir, 'node.json'), JSON.stringify(meta, null, 2) + '\n');
  await put(join(dir, 'node.crt'), c.cert);
}

/** Validity of the node certificate. */
export function certificateLife(certPem: string): { notBefore: number; notAfter: number; serial: string } {
  const c = new X509Certificate(certPem);
  return { notBefore: Date.parse(c.validFrom), notAfter: Date.parse(c.validTo), serial: c.serialNumber };
}

/** Renew when less than a third of the certificate's life is left (or it already expired). */
export function renewalDue(certPem: string, now: number): boolean {
  const { notBefore, notAfter } = certificateLife(certPem);
  return notAfter - now < (notAfter - notBefore) / 3;
}
