/**
 * Joining a cluster and renewing the node certificate, over HTTPS.
 *
 * Join: fetch the server's CA without verification, compare its sha256 with the hash in the join
 * token (a mismatch stops here: nothing is sent), then, over TLS verified against that CA, trade
 * the join token and a CSR for the node's certificate. The key is made on this device.
 */
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import { parseJoinToken } from '../server/identity/join-token.js';
import { backoffDelay } from '../src/util/backoff.js';
import { DroverError, errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { renewalDue, type AgentCredentials } from './credentials.js';

/** A join or renewal the server refused, or a server that is not the one the token names: retrying does not help. */
export class JoinRefusedError extends DroverError {
  constructor(message: string, code = 403, cause?: unknown) {
    super(message, { code, reason: 'JoinRefused', cause });
  }
}

/** The server could not be reached or failed: worth retrying. */
export class ServerUnreachableError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 503, reason: 'ServerUnreachable', cause });
  }
}

const REQUEST_TIMEOUT_MS = 15_000;

interface HttpsCall {
  method: 'GET' | 'POST';
  url: string;
  /** Undefined: no verification (only for fetching the CA whose hash is then checked). */
  ca?: string;
  /** Host name checked against the server certificate instead of the URL's. */
  servername?: string;
  clientCert?: { key: string; cert: string };
  bearer?: string;
  body?: unknown;
}

function httpsCall(c: HttpsCall): Promise<{ status: number; text: string }> {
  const url = new URL(c.url);
  // http:// only reaches a server started with --insecure, where everything crosses in clear anyway.
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return Promise.reject(new JoinRefusedError(`the server URL must be https:// (got ${url.protocol}//)`, 400));
  const send = url.protocol === 'https:' ? request : httpRequest;
  const body = c.body === undefined ? undefined : JSON.stringify(c.body);
  return new Promise((resolve, reject) => {
    const req = send(
      {
        method: c.method,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || 443,
        path: url.pathname + url.search,
        headers: {
          accept: 'application/json',
          ...(c.bearer ? { authorization: `Bearer ${c.bearer}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
        },
        ...(c.ca ? { ca: c.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
        // node checks the certificate against servername when one is given.
        ...(c.servername ? { servername: c.servername } : {}),
        ...(c.clientCert ?? {}),
        timeout: REQUEST_TIMEOUT_MS,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) => reject(new ServerUnreachableError(`reading the answer of ${c.url} failed: ${err.message}`, err)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000}s`)));
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // A certificate the CA did not sign is not a network hiccup: it is the wrong server.
      if (/CERT|SELF_SIGNED|ALTNAME|UNABLE_TO_VERIFY/.test(code) || /altnames|certificate/i.test(err.message)) {
        reject(new JoinRefusedError(`TLS verification of ${url.host} failed: ${err.message}`, 495, err));
      } else reject(new ServerUnreachableError(`cannot reach ${url.host}: ${err.message}`, err));
    });
    req.end(body);
  });
}

function serverMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  } catch (err) {
    return `${text.slice(0, 200)} (${errorMessage(err)})`;
  }
  return text.slice(0, 200);
}

function answer(r: { status: number; text: string }, what: string): JoinAnswer {
  if (r.status >= 500 || r.status === 429) throw new ServerUnreachableError(`${what}: the server answered ${r.status}: ${serverMessage(r.text)}`);
  if (r.status !== 200) throw new JoinRefusedError(`${what} refused (${r.status}): ${serverMessage(r.text)}`, r.status);
  const a = JSON.parse(r.text) as Partial<JoinAnswer>;
  if (typeof a.certificate !== 'string' || typeof a.ca !== 'string' || typeof a.mqttUrl !== 'string') throw new JoinRefusedError(`${what}: the server's answer lacks certificate, ca or mqttUrl`, 502);
  return a as JoinAnswer;
}

interface JoinAnswer {
  certificate: string;
  ca: string;
  mqttUrl: string;
  approved: boolean;
  mqttPassword?: string;
}

/** A key pair as PEM; made on the device, the private half never sent. */
export interface DeviceKey {
  key: string;
  publicKey: string;
}

/**
 * The certificate tools (node-forge makes the CSRs): loaded when a node joins or renews, not kept in the
 * memory of every running agent (about 1.3 MB of heap) for a step taken once a year.
 */
const x509 = () => import('../server/pki/x509.js');

async function newKey(): Promise<DeviceKey> {
  const k = (await x509()).generateKeyPem();
  return { key: k.privateKey, publicKey: k.publicKey };
}

/** Fetches the CA at GET /cacerts (unverified) and checks it against the join token's hash. */
export async function fetchTrustedCa(apiUrl: string, caHash: string, servername?: string): Promise<string> {
  const r = await httpsCall({ method: 'GET', url: new URL('/cacerts', apiUrl).toString(), servername });
  if (r.status !== 200) throw new ServerUnreachableError(`GET /cacerts answered ${r.status}`);
  let got: string;
  try {
    got = (await x509()).certificateHash(r.text);
  } catch (err) {
    throw new JoinRefusedError(`the server at ${apiUrl} did not send a CA certificate at /cacerts; nothing was sent`, 495, err);
  }
  if (got !== caHash) {
    throw new JoinRefusedError(
      `the server at ${apiUrl} presents CA sha256 ${got}, but the join token expects ${caHash}: wrong server or someone in between; nothing was sent`,
      495,
    );
  }
  return r.text;
}

/** One join attempt. The token's secret is sent only after the CA matched. */
export async function joinCluster(o: { apiUrl: string; token: string; node: string; servername?: string; logger: Logger; deviceKey?: DeviceKey }): Promise<AgentCredentials> {
  const token = parseJoinToken(o.token);
  if (new URL(o.apiUrl).protocol === 'http:') o.logger.warn({ server: o.apiUrl }, 'joining over plain HTTP (a server started with --insecure): the join token crosses the network in clear');
  const ca = await fetchTrustedCa(o.apiUrl, token.caHash, o.servername);
  const { key, publicKey } = o.deviceKey ?? (await newKey());
  const csr = (await x509()).createCsr(o.node, key, publicKey);
  const r = await httpsCall({ method: 'POST', url: new URL('/v1/join', o.apiUrl).toString(), ca, servername: o.servername, bearer: token.credential, body: { node: o.node, csr } });
  const a = answer(r, `joining as node ${o.node}`);
  o.logger.info({ node: o.node, approved: a.approved }, a.approved ? 'joined the cluster' : `joined; waiting for approval: drover node approve ${o.node}`);
  return { node: o.node, apiUrl: o.apiUrl, mqttUrl: a.mqttUrl, ca: a.ca, key, cert: a.certificate, mqttPassword: a.mqttPassword, approved: a.approved };
}

/** A new certificate for the same node, authenticated by the current one (expired is fine, revoked is not). */
export async function renewCertificate(c: AgentCredentials, o: { servername?: string; logger: Logger; deviceKey?: DeviceKey }): Promise<AgentCredentials> {
  const { key, publicKey } = o.deviceKey ?? (await newKey());
  const csr = (await x509()).createCsr(c.node, key, publicKey);
  const r = await httpsCall({ method: 'POST', url: new URL('/v1/renew', c.apiUrl).toString(), ca: c.ca, servername: o.servername, clientCert: { key: c.key, cert: c.cert }, body: { csr } });
  const a = answer(r, `renewing the certificate of node ${c.node}`);
  o.logger.info({ node: c.node }, 'node certificate renewed');
  return { ...c, cert: a.certificate, key, ca: a.ca, mqttPassword: a.mqttPassword ?? c.mqttPassword, approved: a.approved };
}

/** Retries `fn` on ServerUnreachableError with the shared backoff; anything else is final. */
export async function withRetries<T>(what: string, fn: () => Promise<T>, o: { logger: Logger; maxDelayMs: number; stopped?: () => boolean }): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ServerUnreachableError) || o.stopped?.()) throw err;
      const delay = backoffDelay(attempt, { baseMs: 500, maxMs: o.maxDelayMs, jitter: 0.5 });
      o.logger.warn({ err: err.message, retryInMs: Math.round(delay) }, `${what} failed; retrying`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export { renewalDue };
