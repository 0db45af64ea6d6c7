/**
 * X.509 building blocks: keys come from node:crypto (native, fast), certificates are assembled and
 * signed with node-forge (node:crypto can read certificates but not make them).
 */
import { constants, createHash, generateKeyPairSync, privateEncrypt, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { ValidationError } from '../../src/util/errors.js';

const { pki } = forge;

/** DER prefix of a PKCS#1 v1.5 DigestInfo for SHA-256 (RFC 8017 9.2 note 1). */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * A signer forge can use in place of its own RSA key: the same RSASSA-PKCS1-v1_5 / SHA-256 signature,
 * computed by node:crypto (native) rather than in JavaScript (~100 ms a certificate, on the event loop).
 */
function nativeSigner(keyPem: string): forge.pki.rsa.PrivateKey {
  const sign = (md: forge.md.MessageDigest) =>
    privateEncrypt({ key: keyPem, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([SHA256_DIGEST_INFO, Buffer.from(md.digest().getBytes(), 'binary')])).toString('binary');
  return { sign } as unknown as forge.pki.rsa.PrivateKey;
}

/** An RSA 2048 key pair as PEM (forge signs only with RSA keys). */
export function generateKeyPem(): { privateKey: string; publicKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

/** sha256 (hex) of a PEM certificate's DER: what a join token carries to pin the CA. */
export function certificateHash(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/**
 * A positive serial number as hex, 126 random bits. The first byte is 0x40-0x7f: its high bit clear so
 * DER does not read the number as negative, and never 0x00, which node-forge would write as a leading
 * zero byte that DER forbids: OpenSSL 3 then refuses the whole certificate ("illegal padding"), and one
 * join in 256 gave an agent a certificate it could not connect with.
 */
export function newSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x3f) | 0x40;
  return b.toString('hex');
}

export interface CertSubject {
  cn: string;
  o?: string;
}

/**
 * Subject attributes as UTF8String, as Go, OpenSSL and k3s write them. node-forge's default,
 * PrintableString, has no '@' (the CA's CN is drover-ca@<time>), and Go's x509 parser (kubectl, any
 * Go client) refuses a certificate whose subject or issuer breaks it, even with verification off.
 */
const UTF8 = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;

function attrs(s: CertSubject): forge.pki.CertificateField[] {
  return [{ shortName: 'CN', value: s.cn, valueTagClass: UTF8 }, ...(s.o ? [{ shortName: 'O', value: s.o, valueTagClass: UTF8 }] : [])];
}

export interface IssuedCert {
  pem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IssueOptions {
  subject: CertSubject;
  publicKeyPem: string;
  /** Signer; absent for the self-signed CA. */
  issuer?: { certPem: string; keyPem: string };
  /** Self-signed CA's own key (when issuer is absent). */
  selfKeyPem?: string;
  usage: 'ca' | 'server' | 'client';
  days: number;
  now: number;
  dnsNames?: string[];
  ips?: string[];
}

/**
 * Issues a certificate. notBefore is an hour in the past so a device whose clock lags a little
 * still accepts it.
 */
export function issueCertificate(o: IssueOptions): IssuedCert {
  const cert = pki.createCertificate();
  cert.publicKey = pki.publicKeyFromPem(o.publicKeyPem);
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(o.now - 3600_000);
  cert.validity.notAfter = new Date(o.now + o.days * 86400_000);
  cert.setSubject(attrs(o.subject));
  const issuerCert = o.issuer ? pki.certificateFromPem(o.issuer.certPem) : undefined;
  cert.setIssuer(issuerCert ? issuerCert.subject.attributes : attrs(o.subject));
  const ext: unknown[] = [];
  if (o.usage === 'ca') {
    ext.push({ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true });
  } else {
    ext.push({ name: 'basicConstraints', cA: false }, { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    ext.push({ name: 'extKeyUsage', serverAuth: o.usage === 'server', clientAuth: o.usage === 'client' });
  }
  const alt = [...(o.dnsNames ?? []).map((value) => ({ type: 2, value })), ...(o.ips ?? []).map((ip) => ({ type: 7, ip }))];
  if (alt.length) ext.push({ name: 'subjectAltName', altNames: alt });
  ext.push({ name: 'subjectKeyIdentifier' });
  cert.setExtensions(ext as never[]);
  const signKey = o.issuer ? o.issuer.keyPem : o.selfKeyPem;
  if (!signKey) throw new Error('issueCertificate: a signer key is required');
  cert.sign(nativeSigner(signKey), forge.md.sha256.create());
  return { pem: pki.certificateToPem(cert), serial: cert.serialNumber, notBefore: cert.validity.notBefore, notAfter: cert.validity.notAfter };
}

/** A PKCS#10 request for `cn`, signed with the device's own key (which never leaves it). */
export function createCsr(cn: string, keyPem: string, publicKeyPem: string): string {
  const csr = pki.createCertificationRequest();
  csr.publicKey = pki.publicKeyFromPem(publicKeyPem);
  csr.setSubject([{ shortName: 'CN', value: cn, valueTagClass: UTF8 }]);
  csr.sign(nativeSigner(keyPem), forge.md.sha256.create());
  return pki.certificationRequestToPem(csr);
}

/** Keys a node may ask a certificate for: what agents make (2048), up to 4096; the usual exponent only. */
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;
const RSA_EXPONENT = '65537';

/**
 * The public key of a CSR whose signature checks out (the requester holds the key) and whose CN is
 * `expectedCn`. Throws a ValidationError naming the problem.
 */
export function verifyCsr(csrPem: string, expectedCn: string): string {
  let csr: ReturnType<typeof pki.certificationRequestFromPem>;
  try {
    csr = pki.certificationRequestFromPem(csrPem);
  } catch (err) {
    throw new ValidationError([{ field: 'csr', message: `not a PEM certificate request (${(err as Error).message})` }], 'invalid join request');
  }
  // Checked before the signature: forge verifies in JavaScript on the event loop, and an attacker-chosen
  // 8192-bit modulus with an 8192-bit exponent takes it 20 s (the whole server stalls).
  const key = csr.publicKey as { n?: { bitLength(): number }; e?: { toString(radix?: number): string } } | null;
  const bits = key?.n?.bitLength() ?? 0;
  if (!key?.n || !key.e) throw new ValidationError([{ field: 'csr', message: 'the public key must be RSA' }], 'invalid join request');
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS || key.e.toString(10) !== RSA_EXPONENT) {
    throw new ValidationError([{ field: 'csr', message: `the public key must be RSA of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits with exponent ${RSA_EXPONENT} (got ${bits} bits)` }], 'invalid join request');
  }
  let signed = false;
  try {
    signed = csr.verify();
  } catch {
    // forge throws on a signature that does not even decrypt under the key: the same refusal.
    signed = false;
  }
  if (!signed) throw new ValidationError([{ field: 'csr', message: 'signature does not match its public key' }], 'invalid join request');
  const cn = csr.subject.getField('CN')?.value as string | undefined;
  if (cn !== expectedCn) throw new ValidationError([{ field: 'csr', message: `subject CN "${cn ?? ''}" is not the node name "${expectedCn}"` }], 'invalid join request');
  if (!csr.publicKey) throw new ValidationError([{ field: 'csr', message: 'no public key' }], 'invalid join request');
  return pki.publicKeyToPem(csr.publicKey);
}

/** CN, O, serial and validity of a certificate, and whether `caPem` signed it (validity dates not checked). */
export function inspectCertificate(certPem: string, caPem: string): { cn?: string; o?: string; serial: string; notBefore: Date; notAfter: Date; signedByCa: boolean } {
  const cert = pki.certificateFromPem(certPem);
  let signedByCa = false;
  try {
    signedByCa = pki.certificateFromPem(caPem).verify(cert);
  } catch {
    // forge throws (rather than returning false) when the issuer names differ: not ours.
    signedByCa = false;
  }
  return {
    cn: cert.subject.getField('CN')?.value as string | undefined,
    o: cert.subject.getField('O')?.value as string | undefined,
    serial: cert.serialNumber,
    notBefore: cert.validity.notBefore,
    notAfter: cert.validity.notAfter,
    signedByCa,
  };
}

/** Normalises a serial as node:tls prints it (upper-case hex, leading zeros dropped) for comparisons. */
export function normalSerial(serial: string): string {
  return serial.replace(/^0+/, '').toUpperCase();
}
