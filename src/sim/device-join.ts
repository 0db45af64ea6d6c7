/**
 * Joining simulated devices in bulk, the way agent/join.ts does it for one device: fetch the CA at
 * GET /cacerts, check it against the K10 token's hash, then POST /v1/join with the token and a CSR
 * over TLS verified against that CA. Two shortcuts keep the load generator from hiding the server's
 * costs on a small machine (both are device-side work a real fleet spreads over its devices):
 * - keys come from a pool: a device's RSA key takes tens of milliseconds of CPU, minutes for 1,000 on
 *   a shared box; the server checks and signs every request the same way whichever key it carries;
 * - CSRs are signed with node:crypto (native) instead of forge's JavaScript RSA, before joining starts.
 */
import { constants, generateKeyPair, privateEncrypt } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { JoinRefusedError, ServerUnreachableError } from '../../agent/join.js';
import { parseJoinToken } from '../../server/identity/join-token.js';
import { certificateHash } from '../../server/pki/x509.js';

export interface DeviceKeyPem {
  key: string;
  publicKey: string;
}

const generate = promisify(generateKeyPair);

/** `count` RSA 2048 key pairs (as the agent makes them), made on libuv's thread pool. */
export async function keyPool(count: number): Promise<DeviceKeyPem[]> {
  const keys = await Promise.all(
    Array.from({ length: count }, () => generate('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })),
  );
  return keys.map((k) => ({ key: k.privateKey, publicKey: k.publicKey }));
}

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256: the RSA signature is this plus the hash, padded (type 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/** A PKCS#10 request for `cn`, as server/pki/x509.ts createCsr makes it, but signed natively. */
export function nativeCsr(cn: string, k: DeviceKeyPem): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(k.publicKey);
  csr.setSubject([{ shortName: 'CN', value: cn }]);
  // forge only asks the key for sign(md): RSASSA-PKCS1-v1_5 over forge's SHA-256 of the request info.
  const signer = {
    sign: (md: forge.md.MessageDigest) =>
      privateEncrypt({ key: k.key, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), 'binary')])).toString('binary'),
  };
  csr.sign(signer as unknown as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

export interface Joined {
  cert: string;
  ca: string;
  mqttUrl: string;
  mqttPassword?: string;
}

/** One request on its own connection (agent: false), as each device opens its own. */
function call(method: 'GET' | 'POST', url: URL, o: { ca?: string; bearer?: string; body?: unknown; timeoutMs: number }): Promise<{ status: number; text: string }> {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      {
        method,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path: url.pathname,
        agent: false,
        timeout: o.timeoutMs,
        ...(o.ca ? { ca: o.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
        headers: { ...(o.bearer ? { authorization: `Bearer ${o.bearer}` } : {}), ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(new ServerUnreachableError(`${method} ${url.pathname}: reading the answer failed: ${err.message}`, err)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', (err) => reject(new ServerUnreachableError(`${method} ${url.pathname}: ${err.message}`, err)));
    req.end(body);
  });
}

/** GET /cacerts (unverified, then checked against the token) and POST /v1/join; throws with the server's answer on a refusal. */
export async function joinDevice(apiUrl: string, k10Token: string, node: string, csr: string, timeoutMs = 60_000): Promise<Joined> {
  const token = parseJoinToken(k10Token);
  const ca = await call('GET', new URL('/cacerts', apiUrl), { timeoutMs });
  if (ca.status !== 200) throw new ServerUnreachableError(`GET /cacerts: HTTP ${ca.status}`);
  if (certificateHash(ca.text) !== token.caHash) throw new JoinRefusedError('GET /cacerts: the CA does not match the join token');
  const r = await call('POST', new URL('/v1/join', apiUrl), { ca: apiUrl.startsWith('https:') ? ca.text : undefined, bearer: token.credential, body: { node, csr }, timeoutMs });
  if (r.status >= 500 || r.status === 429) throw new ServerUnreachableError(`POST /v1/join: HTTP ${r.status} ${r.text.slice(0, 200)}`);
  if (r.status !== 200) throw new JoinRefusedError(`POST /v1/join: HTTP ${r.status} ${r.text.slice(0, 200)}`, r.status);
  const a = JSON.parse(r.text) as { certificate: string; ca: string; mqttUrl: string; mqttPassword?: string };
  return { cert: a.certificate, ca: a.ca, mqttUrl: a.mqttUrl, mqttPassword: a.mqttPassword };
}
