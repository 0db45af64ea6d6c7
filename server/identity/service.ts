/**
 * Node identity: a device redeems a join token once for its own client certificate (CN = node name),
 * renews it with that certificate, and an admin approves or revokes it. The broker then trusts the
 * certificate only while it is the node's current, non-revoked credential.
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { isTopicSafe } from '../../src/contract/topics.js';
import { DroverError, ForbiddenError, UnauthorizedError, ValidationError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { TokenStore } from '../auth/tokens.js';
import { DEFAULTS } from '../config.js';
import { NODE_ORG, SERVER_CLIENT_CN, type Pki } from '../pki/pki.js';
import { inspectCertificate, issueCertificate, verifyCsr } from '../pki/x509.js';
import type { NodeCredential, NodeCredentials } from './node-credentials.js';


export interface JoinAnswer {
  certificate: string;
  ca: string;
  /** The broker URL agents should dial (advertised address). */
  mqttUrl: string;
  approved: boolean;
  /** The node's MQTT password for a plain (--insecure) listener; not handed out by a TLS server. */
  mqttPassword?: string;
  node: string;
}

export interface NodeIdentityDeps {
  pki: Pki;
  credentials: NodeCredentials;
  tokens: Pick<TokenStore, 'redeemJoin' | 'checkJoin'>;
  logger: Logger;
  mqttUrl: string;
  requireApproval: boolean;
  /** Plain (--insecure) broker: nodes also get a per-node MQTT password. */
  plainPasswords: boolean;
  certDays?: number;
  now?: () => number;
  /** Cuts a revoked node off: its MQTT session, its retained topics, its Node object. */
  onRevoked(node: string): Promise<void>;
}

/** A node name as a DNS subdomain (253 chars at most) that is also one MQTT topic level. */
export function validateNodeName(node: unknown): string {
  if (typeof node !== 'string' || node.length === 0 || node.length > 253 || !isTopicSafe(node)) {
    throw new ValidationError([{ field: 'node', message: `${JSON.stringify(node)} is not a DNS subdomain (lower-case letters, digits, '-' and '.')` }], 'invalid node name');
  }
  // An external broker maps the certificate's CN to its username: a node named like the server's
  // client would get the server's ACL there.
  if (node === SERVER_CLIENT_CN) throw new ValidationError([{ field: 'node', message: `"${node}" is reserved for the server's own client` }], 'invalid node name');
  return node;
}

/** sha256 hex of a public key's SPKI DER: which key the current certificate of a node certifies. */
function publicKeyHash(publicKeyPem: string): string {
  return createHash('sha256').update(createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' })).digest('hex');
}

function csrOf(body: unknown): string {
  const csr = (body as { csr?: unknown } | undefined)?.csr;
  if (typeof csr !== 'string' || !csr.includes('CERTIFICATE REQUEST')) throw new ValidationError([{ field: 'csr', message: 'a PEM certificate request is required' }], 'invalid request');
  return csr;
}

/**
 * The node name a client certificate names, if it is a node certificate this cluster's CA signed (any
 * certificate can be presented: the TLS handshake asks for one but does not require ours); 401 otherwise.
 */
function certifiedNode(peerCertPem: string, caCert: string): { node: string; info: ReturnType<typeof inspectCertificate> } {
  let info: ReturnType<typeof inspectCertificate>;
  try {
    info = inspectCertificate(peerCertPem, caCert);
  } catch (err) {
    // One forge cannot read is not ours.
    throw new UnauthorizedError(`the client certificate cannot be read as a node certificate (${(err as Error).message})`);
  }
  if (!info.signedByCa || info.o !== NODE_ORG || !info.cn || !isTopicSafe(info.cn)) throw new UnauthorizedError('the client certificate is not a node certificate of this cluster');
  return { node: info.cn, info };
}

export class NodeIdentity {
  /** Names with a join in flight: two joins of one name at once must not both pass the check. */
  private readonly joining = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly deps: NodeIdentityDeps) {
    this.now = deps.now ?? Date.now;
  }

  get caCert(): string {
    return this.deps.pki.caCert;
  }

  /**
   * POST /v1/join: bearer `<id>.<secret>`, body {node, csr}. The token is checked before the body is
   * read or a CSR parsed (nothing costly happens for a caller without one); a use is spent only by a
   * join that succeeds.
   */
  async join(bearer: string | undefined, readBody: () => Promise<unknown>): Promise<JoinAnswer> {
    if (!bearer) throw new UnauthorizedError('a join token is required (Authorization: Bearer <id>.<secret>)');
    // Checked, not spent, before anything else is read: a join refused below (409, 403) costs no use,
    // and a used-up token still serves the repeated join of the device it let in.
    const checked = this.deps.tokens.checkJoin(bearer, { allowUsedUp: true });
    const body = await readBody();
    const node = validateNodeName((body as { node?: unknown } | undefined)?.node);
    const csr = csrOf(body);
    if (this.joining.has(node)) throw new DroverError(`a join of node ${node} is already in progress`, { code: 409, reason: 'AlreadyExists' });
    this.joining.add(node);
    try {
      const cur = this.deps.credentials.get(node);
      if (cur?.state === 'revoked') {
        throw new ForbiddenError(`node ${node} was revoked; \`drover node approve ${node}\` lets it join again`);
      }
      const publicKey = verifyCsr(csr, node);
      const keySha256 = publicKeyHash(publicKey);
      // A name that holds a live credential is taken: the join token alone must not let a second
      // device become it (that is what stopped impersonation with the shared token). The same device
      // again, with a valid token and its request signed by the key its current certificate
      // certifies (a join whose answer was lost), is given a certificate anew.
      const repeated = !!cur?.serial && cur.keySha256 === keySha256;
      if (cur?.serial && !repeated) {
        throw new DroverError(`node ${node} already joined; \`drover node revoke ${node}\` first`, { code: 409, reason: 'AlreadyExists' });
      }
      const redeemed = repeated ? checked : await this.deps.tokens.redeemJoin(bearer);
      // Approved ahead (after a revoke) or no approval required: in at once; a repeated join keeps its state.
      const approved = repeated ? cur.state === 'approved' : !this.deps.requireApproval || cur?.state === 'approved';
      const cert = this.issue(node, publicKey);
      const mqttPassword = this.plainPassword();
      await this.deps.credentials.issue(node, { serial: cert.serial, notAfter: cert.notAfter, state: approved ? 'approved' : 'pending', tokenId: redeemed.id, secret: mqttPassword, keySha256, labels: redeemed.labels });
      this.deps.logger.info({ node, tokenId: redeemed.id, repeated, approved, notAfter: cert.notAfter.toISOString() }, approved ? 'node joined' : `node joined, waiting for approval: drover node approve ${node}`);
      return { node, certificate: cert.pem, ca: this.deps.pki.caCert, mqttUrl: this.deps.mqttUrl, approved, ...(mqttPassword ? { mqttPassword } : {}) };
    } finally {
      this.joining.delete(node);
    }
  }

  /** A per-node MQTT password, only where a plain listener needs one: a TLS server hands out no second credential. */
  private plainPassword(): string | undefined {
    return this.deps.plainPasswords ? randomBytes(24).toString('base64url') : undefined;
  }

  /**
   * POST /v1/renew over TLS with the node's certificate: a new certificate for the same name. An
   * expired one still renews (a device offline for months) as long as it is the current credential
   * and not revoked; the TLS handshake proved the key.
   */
  async renew(peerCertPem: string | undefined, readBody: () => Promise<unknown>): Promise<JoinAnswer> {
    if (!peerCertPem) throw new UnauthorizedError('renewal needs the node\'s client certificate');
    const { node, info } = certifiedNode(peerCertPem, this.deps.pki.caCert);
    let check = this.deps.credentials.check(node, info.serial);
    if (check === 'revoked') throw new ForbiddenError(`node ${node} was revoked`);
    const cur = this.deps.credentials.get(node);
    // Only a certificate this node held reads further (the current one, or the one just superseded by a renewal whose answer was lost).
    if (check !== 'ok' && check !== 'pending' && !(check === 'superseded' && cur?.keySha256)) {
      throw new UnauthorizedError(`this certificate is no longer node ${node}'s current credential (${check})`);
    }
    const publicKey = verifyCsr(csrOf(await readBody()), node);
    // The answer to a renewal got lost: the device asks again with its old certificate, for the key the
    // current certificate already certifies (only it holds that key): issue again.
    if (check === 'superseded' && cur?.keySha256 === publicKeyHash(publicKey)) check = cur.state === 'pending' ? 'pending' : 'ok';
    if (check !== 'ok' && check !== 'pending') throw new UnauthorizedError(`this certificate is no longer node ${node}'s current credential (${check})`);
    const cert = this.issue(node, publicKey);
    const mqttPassword = this.plainPassword();
    await this.deps.credentials.issue(node, { serial: cert.serial, notAfter: cert.notAfter, state: check === 'ok' ? 'approved' : 'pending', secret: mqttPassword, keySha256: publicKeyHash(publicKey) });
    this.deps.logger.info({ node, notAfter: cert.notAfter.toISOString(), wasExpired: info.notAfter.getTime() < this.now() }, 'node certificate renewed');
    return { node, certificate: cert.pem, ca: this.deps.pki.caCert, mqttUrl: this.deps.mqttUrl, approved: check === 'ok', ...(mqttPassword ? { mqttPassword } : {}) };
  }

  /**
   * The node a request's client certificate proves it is, for routes a node calls with it (image
   * fetches): signed by this cluster's CA, a node certificate, within its validity, the node's current
   * credential, approved. 401 for a certificate that is not a live credential, 403 for a node revoked
   * or waiting for approval.
   */
  nodeOfCertificate(peerCertPem: string | undefined): string {
    if (!peerCertPem) throw new UnauthorizedError('a bearer token or the node\'s client certificate is required');
    const { node, info } = certifiedNode(peerCertPem, this.deps.pki.caCert);
    const now = this.now();
    if (info.notAfter.getTime() < now || info.notBefore.getTime() > now) throw new UnauthorizedError(`node ${node}'s certificate is not valid now (valid ${info.notBefore.toISOString()} to ${info.notAfter.toISOString()}): the agent renews it`);
    const check = this.deps.credentials.check(node, info.serial);
    if (check === 'revoked') throw new ForbiddenError(`node ${node} was revoked`);
    if (check === 'pending') throw new ForbiddenError(`node ${node} waits for approval (drover node approve ${node})`);
    if (check !== 'ok') throw new UnauthorizedError(`this certificate is no longer node ${node}'s current credential (${check})`);
    return node;
  }

  async approve(node: string): Promise<NodeCredential> {
    const rec = await this.deps.credentials.approve(validateNodeName(node));
    this.deps.logger.info({ node }, 'node approved');
    return rec;
  }

  /** The server's own local agent: its operator vouches for it, no approval step. */
  async preapprove(node: string): Promise<void> {
    await this.deps.credentials.preapprove(validateNodeName(node));
  }

  async revoke(node: string): Promise<NodeCredential> {
    const rec = await this.deps.credentials.revoke(validateNodeName(node));
    this.deps.logger.warn({ node }, 'node revoked');
    await this.deps.onRevoked(node);
    return rec;
  }

  list(): NodeCredential[] {
    return this.deps.credentials.list();
  }

  private issue(node: string, publicKeyPem: string) {
    const { pki } = this.deps;
    return issueCertificate({
      subject: { cn: node, o: NODE_ORG },
      publicKeyPem,
      issuer: { certPem: pki.caCert, keyPem: pki.caKey },
      usage: 'client',
      days: this.deps.certDays ?? DEFAULTS.nodeCertDays,
      now: this.now(),
    });
  }
}
