/**
 * The server's certificate authority and its own certificates, made at first start under
 * DATA_DIR/tls (0700; keys 0600), as k3s does. A CA placed there beforehand (ca.crt + ca.key) is used
 * as is, so an operator may bring their own.
 */
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../../src/util/logger.js';
import { certificateHash, generateKeyPem, inspectCertificate, issueCertificate } from './x509.js';

/** Identity of the server's own MQTT client (its certificate's CN and O). */
export const SERVER_CLIENT_CN = 'drover-server';
export const SERVER_CLIENT_ORG = 'drover:server';
/** O of node certificates. */
export const NODE_ORG = 'drover:nodes';

const CA_DAYS = 3650;
const SERVER_DAYS = 365;
/** The server re-issues its own certificates at start when less than this is left. */
const RENEW_BEFORE_DAYS = 90;

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  /** sha256 hex of the CA certificate's DER (the K10 part of a join token). */
  caHash: string;
  server: { cert: string; key: string };
  /** The server's own MQTT client certificate (CN drover-server, O drover:server). */
  serverClient: { cert: string; key: string };
}

/** A file's text, or undefined when it does not exist. */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Atomic write (temp + rename) with the given mode, so a crash never leaves half a key. */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** The names the server certificate covers: loopback, this host, the advertised address, extras. */
export function serverSans(extra: string[]): { dns: string[]; ips: string[] } {
  const all = new Set(['localhost', '127.0.0.1', '::1', hostname().toLowerCase(), ...extra.filter(Boolean)]);
  const dns: string[] = [];
  const ips: string[] = [];
  for (const n of all) (isIP(n) ? ips : dns).push(n);
  return { dns, ips };
}

function covers(certPem: string, sans: { dns: string[]; ips: string[] }): boolean {
  const alt = new X509Certificate(certPem).subjectAltName ?? '';
  const have = new Set(alt.split(', ').map((s) => s.replace(/^(DNS|IP Address):/, '').toLowerCase()));
  // node prints IPv6 SANs expanded: compare through a canonical form.
  const canon = (ip: string) => (isIP(ip) === 6 ? expandIPv6(ip) : ip);
  const haveIps = new Set([...have].map(canon));
  return sans.dns.every((d) => have.has(d.toLowerCase())) && sans.ips.every((ip) => haveIps.has(canon(ip)));
}

function expandIPv6(ip: string): string {
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const fill = tail !== undefined ? Array(8 - h.length - t.length).fill('0') : [];
  return [...h, ...fill, ...t].map((p) => parseInt(p || '0', 16).toString(16)).join(':');
}

function keyMatches(certPem: string, keyPem: string): boolean {
  return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
}

/** The PKI files a data dir holds (relative to DATA_DIR/tls): the CA and the server's MQTT client identity are the cluster's, the serving certificate each server's own. */
export const PKI_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  clientCert: 'client-drover-server.crt',
  clientKey: 'client-drover-server.key',
} as const;

/**
 * The CA and the server's MQTT client certificate in `dir`, each made when missing (the client
 * certificate also again when near expiry or signed by another CA). What several servers on one etcd
 * share (server/cluster/bootstrap.ts); loadOrCreatePki adds each server's own serving certificate.
 */
export async function loadOrCreateClusterPki(opts: { dir: string; logger: Logger; now?: () => number }): Promise<{ caCert: string; caKey: string; serverClient: { cert: string; key: string } }> {
  const now = opts.now ?? Date.now;
  const { dir, logger } = opts;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const path = (f: string) => join(dir, f);

  let caCert = await readOptional(path(PKI_FILES.caCert));
  let caKey = await readOptional(path(PKI_FILES.caKey));
  if (!caCert || !caKey) {
    const k = generateKeyPem();
    // A random suffix: two clusters' CAs made in the same second must not share a subject, or a client trusting
    // both may check a certificate against the wrong one (CERT_SIGNATURE_FAILURE).
    caCert = issueCertificate({ subject: { cn: `drover-ca@${Math.floor(now() / 1000)}-${randomBytes(4).toString('hex')}` }, publicKeyPem: k.publicKey, selfKeyPem: k.privateKey, usage: 'ca', days: CA_DAYS, now: now() }).pem;
    caKey = k.privateKey;
    await writeFileAtomic(path(PKI_FILES.caKey), caKey, 0o600);
    await writeFileAtomic(path(PKI_FILES.caCert), caCert, 0o644);
    logger.info({ caHash: certificateHash(caCert) }, 'created the cluster certificate authority');
  }
  const issuer = { certPem: caCert, keyPem: caKey };
  let clientCert = await readOptional(path(PKI_FILES.clientCert));
  let clientKey = await readOptional(path(PKI_FILES.clientKey));
  if (!fresh(caCert, clientCert, clientKey, now(), () => true)) {
    const k = generateKeyPem();
    clientCert = issueCertificate({ subject: { cn: SERVER_CLIENT_CN, o: SERVER_CLIENT_ORG }, publicKeyPem: k.publicKey, issuer, usage: 'client', days: SERVER_DAYS, now: now() }).pem;
    clientKey = k.privateKey;
    await writeFileAtomic(path(PKI_FILES.clientKey), clientKey, 0o600);
    await writeFileAtomic(path(PKI_FILES.clientCert), clientCert, 0o644);
  }
  return { caCert, caKey, serverClient: { cert: clientCert!, key: clientKey! } };
}

/** Signed by `caCert`, not near expiry, matching its key, and passing `check`. */
function fresh(caCert: string, certPem: string | undefined, keyPem: string | undefined, now: number, check: (c: string) => boolean): boolean {
  if (!certPem || !keyPem) return false;
  const info = inspectCertificate(certPem, caCert);
  return info.signedByCa && info.notAfter.getTime() - now > RENEW_BEFORE_DAYS * 86400_000 && keyMatches(certPem, keyPem) && check(certPem);
}

/**
 * Loads the PKI from `dir`, creating what is missing: the CA once, and the server certificates
 * again when the wanted names are not all covered, they are near expiry, or another CA signed them.
 */
export async function loadOrCreatePki(opts: { dir: string; sans: { dns: string[]; ips: string[] }; logger: Logger; now?: () => number }): Promise<Pki> {
  const now = opts.now ?? Date.now;
  const { dir, logger } = opts;
  const { caCert, caKey, serverClient } = await loadOrCreateClusterPki(opts);
  const path = (f: string) => join(dir, f);
  const issuer = { certPem: caCert, keyPem: caKey };

  let serverCert = await readOptional(path('server.crt'));
  let serverKey = await readOptional(path('server.key'));
  if (!fresh(caCert, serverCert, serverKey, now(), (c) => covers(c, opts.sans))) {
    const k = generateKeyPem();
    serverCert = issueCertificate({ subject: { cn: 'drover-server', o: 'drover' }, publicKeyPem: k.publicKey, issuer, usage: 'server', days: SERVER_DAYS, now: now(), dnsNames: opts.sans.dns, ips: opts.sans.ips }).pem;
    serverKey = k.privateKey;
    await writeFileAtomic(path('server.key'), serverKey, 0o600);
    await writeFileAtomic(path('server.crt'), serverCert, 0o644);
    logger.info({ dns: opts.sans.dns, ips: opts.sans.ips }, 'issued the server certificate');
  }
  return { dir, caCert, caKey, caHash: certificateHash(caCert), server: { cert: serverCert!, key: serverKey! }, serverClient };
}
