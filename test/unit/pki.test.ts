import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { renewalDue } from '../../agent/credentials.js';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { certificateHash, createCsr, generateKeyPem, inspectCertificate, issueCertificate, newSerial, verifyCsr } from '../../server/pki/x509.js';
import { silentLogger } from '../../src/util/logger.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('first start makes a CA and server certificates (keys 0600, dir 0700); the next start keeps them; a new SAN re-issues only the server certificate', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'drover-pki-')), 'tls');
  dirs.push(dir);
  const a = await loadOrCreatePki({ dir, sans: serverSans(['10.9.8.7']), logger: silentLogger });
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  for (const f of ['ca.key', 'server.key', 'client-drover-server.key']) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
  const ca = new X509Certificate(a.caCert);
  assert.ok(ca.ca);
  const server = new X509Certificate(a.server.cert);
  assert.ok(server.verify(ca.publicKey), 'signed by the CA');
  assert.match(server.subjectAltName!, /DNS:localhost/);
  assert.match(server.subjectAltName!, /IP Address:10\.9\.8\.7/);
  assert.match(server.subjectAltName!, /IP Address:127\.0\.0\.1/);
  assert.equal(a.caHash, certificateHash(await readFile(join(dir, 'ca.crt'), 'utf8')));
  const client = inspectCertificate(a.serverClient.cert, a.caCert);
  assert.deepEqual([client.cn, client.o, client.signedByCa], ['drover-server', 'drover:server', true]);

  const b = await loadOrCreatePki({ dir, sans: serverSans(['10.9.8.7']), logger: silentLogger });
  assert.equal(b.server.cert, a.server.cert, 'kept across restarts');
  const c = await loadOrCreatePki({ dir, sans: serverSans(['10.9.8.7', 'edge.example.org']), logger: silentLogger });
  assert.equal(c.caCert, a.caCert, 'the CA stays');
  assert.notEqual(c.server.cert, a.server.cert);
  assert.match(new X509Certificate(c.server.cert).subjectAltName!, /DNS:edge\.example\.org/);
});

test('a CSR is accepted only for the node it names and with a valid signature', () => {
  const k = generateKeyPem();
  const csr = createCsr('edge-1', k.privateKey, k.publicKey);
  assert.match(verifyCsr(csr, 'edge-1'), /BEGIN PUBLIC KEY/);
  assert.throws(() => verifyCsr(csr, 'edge-2'), /subject CN "edge-1" is not the node name "edge-2"/);
  // The public key swapped for another: the signature no longer matches.
  const other = generateKeyPem();
  const forged = createCsr('edge-1', k.privateKey, other.publicKey);
  assert.throws(() => verifyCsr(forged, 'edge-1'), /signature does not match/);
  assert.throws(() => verifyCsr('not a csr', 'edge-1'), /csr: not a PEM certificate request/);
});

test('renewal is due with a third of the life left, and for an expired certificate', () => {
  const ca = generateKeyPem();
  const caCert = issueCertificate({ subject: { cn: 'ca' }, publicKeyPem: ca.publicKey, selfKeyPem: ca.privateKey, usage: 'ca', days: 3650, now: Date.now() }).pem;
  const k = generateKeyPem();
  const t0 = Date.UTC(2026, 0, 1);
  const cert = issueCertificate({ subject: { cn: 'edge-1', o: 'drover:nodes' }, publicKeyPem: k.publicKey, issuer: { certPem: caCert, keyPem: ca.privateKey }, usage: 'client', days: 300, now: t0 });
  const day = 86400_000;
  assert.equal(renewalDue(cert.pem, t0 + 150 * day), false);
  assert.equal(renewalDue(cert.pem, t0 + 201 * day), true);
  assert.equal(renewalDue(cert.pem, t0 + 400 * day), true);
  assert.equal(inspectCertificate(cert.pem, caCert).signedByCa, true);
  assert.equal(inspectCertificate(cert.pem, cert.pem).signedByCa, false, 'another issuer');
});

test('every serial number is a positive integer in minimal DER (OpenSSL refuses a certificate whose serial has a leading zero byte)', () => {
  // The bug this guards: one random serial in 256 began with a zero byte followed by one below 0x80,
  // which DER forbids; that node's certificate failed every TLS connection with "illegal padding".
  const seen = new Set<string>();
  for (let i = 0; i < 20_000; i++) {
    const hex = newSerial();
    assert.match(hex, /^[0-9a-f]{32}$/);
    const [b0, b1] = [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16)];
    assert.ok(b0 < 0x80, `serial ${hex} would be negative`);
    assert.ok(!(b0 === 0 && b1 < 0x80), `serial ${hex} has a leading zero byte DER forbids`);
    seen.add(hex);
  }
  assert.equal(seen.size, 20_000, 'no serial repeats');
});
