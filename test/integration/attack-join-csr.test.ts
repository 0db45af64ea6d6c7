/**
 * POST /v1/join is open to anyone who can reach the API (no client certificate, any bearer string gets past the
 * "a join token is required" check). An attacker without a join token sends what the route reads before it looks
 * at the token:
 * - a certificate request whose public key has an 8192-bit modulus and an 8192-bit exponent: node-forge checks its
 *   signature in JavaScript, on the event loop, for tens of seconds (API, embedded broker and controllers stop);
 * - many 3 MiB bodies held open: each is buffered before the token is checked.
 * A server started as the README says (a `drover server` process) must refuse both without stalling or growing.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request, type RequestOptions } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import forge from 'node-forge';
import { join } from 'node:path';
import { Cleanup, serverProcess, type ServerProcess } from '../helpers/fault.js';

const { pki, jsbn } = forge;

/** A random odd integer of exactly `bits` bits. */
function bigOdd(bits: number): forge.jsbn.BigInteger {
  const b = randomBytes(bits / 8);
  b[0]! |= 0x80;
  b[b.length - 1]! |= 0x01;
  return new jsbn.BigInteger(b.toString('hex'), 16);
}

/**
 * A PEM certificate request for `cn` whose public key is (n, e) with both of `bits` bits and whose signature is
 * a random number below n: checking it is one bits x bits modular exponentiation. Making it costs nothing.
 */
function hugeExponentCsr(cn: string, bits: number): string {
  const small = pki.rsa.generateKeyPair({ bits: 512, e: 0x10001 });
  const csr = pki.createCertificationRequest();
  csr.publicKey = small.publicKey;
  csr.setSubject([{ shortName: 'CN', value: cn }]);
  csr.sign(small.privateKey, forge.md.sha256.create());
  const n = bigOdd(bits);
  csr.publicKey = pki.setRsaPublicKey(n, bigOdd(bits));
  // forge caches the signed part; drop it so the PEM carries the new key.
  (csr as unknown as { certificationRequestInfo: unknown }).certificationRequestInfo = null;
  csr.signature = forge.util.hexToBytes(bigOdd(bits).mod(n).toString(16).padStart(bits / 4, '0'));
  return pki.certificationRequestToPem(csr);
}

interface Answer {
  status: number;
  text: string;
  sentAt: number;
  doneAt: number;
}

function call(o: RequestOptions & { body?: string }): Promise<Answer> {
  const sentAt = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ ...o, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, sentAt, doneAt: performance.now() }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

function vmRssMiB(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)![1]) / 1024);
}

describe('attack: POST /v1/join without a valid join token', () => {
  const cleanup = new Cleanup();
  let s: ServerProcess;
  let ca: string;
  const base = (): RequestOptions => ({ host: '127.0.0.1', port: s.apiPort, ca, method: 'POST', path: '/v1/join' });

  before(async () => {
    s = await serverProcess(cleanup);
    await s.start();
    ca = await readFile(join(s.dataDir, 'tls', 'ca.crt'), 'utf8');
  });
  after(() => cleanup.run());

  test('a made-up token with a costly certificate request is refused as unauthorized (401), not after checking the request', async () => {
    const body = JSON.stringify({ node: 'slow-a', csr: hugeExponentCsr('slow-a', 8192) });
    const r = await call({ ...base(), headers: { authorization: 'Bearer x', 'content-type': 'application/json' }, body });
    assert.equal(r.status, 401, `a join without a valid token must be a 401 whatever the CSR; got ${r.status} ${r.text.slice(0, 200)}`);
  });

  test('with the real join token, a key with an 8192-bit exponent is refused naming the key, and /healthz is not held behind it', async () => {
    const credential = s.joinToken.split('::')[1]!;
    const body = JSON.stringify({ node: 'slow-b', csr: hugeExponentCsr('slow-b', 8192) });
    const joining = call({ ...base(), headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body });
    await new Promise((r) => setTimeout(r, 200));
    const health = call({ host: '127.0.0.1', port: s.apiPort, ca, method: 'GET', path: '/healthz' });
    const [j, h] = await Promise.all([joining, health]);
    assert.equal(h.status, 200);
    // Ordering, not timing: a /healthz sent while the join was still being handled must not wait for it.
    const heldBehind = h.sentAt < j.doneAt && h.doneAt >= j.doneAt;
    assert.ok(!heldBehind, `/healthz sent while the join was in flight was answered only after it (join took ${Math.round(j.doneAt - j.sentAt)} ms): the event loop was blocked`);
    assert.equal(j.status, 422, j.text.slice(0, 300));
    assert.match(j.text, /exponent|bits|65537/i, 'the refusal should name what is wrong with the key');
  });

  test('100 connections holding 3 MiB join bodies with a made-up token do not grow the server by 100 MiB', async () => {
    const pid = s.proc.child.pid!;
    const before = await vmRssMiB(pid);
    const LEN = 3 * 1024 * 1024 - 16;
    const filler = Buffer.alloc(LEN - 1, 0x20);
    const sockets: TLSSocket[] = [];
    await Promise.all(
      Array.from({ length: 100 }, () =>
        new Promise<void>((resolve) => {
          const sock = tlsConnect({ host: '127.0.0.1', port: s.apiPort, ca, servername: 'localhost' });
          sockets.push(sock);
          sock.on('error', () => resolve());
          sock.on('close', () => resolve());
          sock.once('secureConnect', () => {
            sock.write(`POST /v1/join HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x.y\r\nContent-Type: application/json\r\nContent-Length: ${LEN}\r\n\r\n`);
            // All but the last byte: the server has it all and waits for the end of the body.
            if (sock.write(filler)) resolve();
            else sock.once('drain', () => resolve());
          });
        }),
      ),
    );
    // The bytes were handed to the kernel; give the server a moment to read what is in its socket buffers.
    await new Promise((r) => setTimeout(r, 2000));
    const during = await vmRssMiB(pid);
    for (const sock of sockets) sock.destroy();
    const res = await fetch(`https://127.0.0.1:${s.apiPort}/healthz`);
    assert.equal(res.status, 200);
    assert.ok(during - before < 100, `server RSS ${before.toFixed(0)} → ${during.toFixed(0)} MiB with 100 unauthenticated join bodies held open`);
  });
});
