/**
 * Each node's current credential: the serial of the one client certificate that may speak for it,
 * and whether it is pending approval, approved or revoked. DATA_DIR/auth/nodes.json (0600, replaced
 * atomically). A certificate with any other serial (an older one, one issued before a revoke) is
 * refused by the broker even though the CA signed it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { NotFoundError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, writePrivateFileAtomic } from '../../src/util/private-fs.js';
import { normalSerial } from '../pki/x509.js';

export type CredentialState = 'pending' | 'approved' | 'revoked';

const record = z.strictObject({
  node: z.string(),
  /** Upper-case hex, no leading zeros (as node:tls reports a peer certificate's serial). Absent: none issued yet (approved ahead of a re-join). */
  serial: z.string().optional(),
  notAfter: z.string().optional(),
  state: z.enum(['pending', 'approved', 'revoked']),
  /** The join token (id only) the node joined with. */
  tokenId: z.string().optional(),
  /** sha256 hex of the public key (SPKI DER) the current certificate certifies. */
  keySha256: z.string().optional(),
  /** Labels the join token gives the node (server-set: the agent cannot change them). */
  labels: z.record(z.string(), z.string()).optional(),
  /** sha256 hex of the per-node MQTT password used on an --insecure (plain) listener. */
  secretSha256: z.string().optional(),
  issuedAt: z.string().optional(),
  changedAt: z.string(),
});
export type NodeCredential = z.infer<typeof record>;
const file = z.strictObject({ version: z.literal(1), nodes: z.array(record) });

/** Why a presented credential is (not) accepted. */
export type CredentialCheck = 'ok' | 'unknown' | 'pending' | 'revoked' | 'superseded';

export class NodeCredentials {
  private readonly nodes = new Map<string, NodeCredential>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string, private readonly now: () => number) {}

  static async open(opts: { dataDir: string; logger: Logger; now?: () => number }): Promise<NodeCredentials> {
    const dir = join(opts.dataDir, 'auth');
    await ensurePrivateDir(dir, opts.logger);
    const c = new NodeCredentials(join(dir, 'nodes.json'), opts.now ?? Date.now);
    let text: string | undefined;
    try {
      text = await readFile(c.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text !== undefined) {
      const parsed = file.safeParse(JSON.parse(text));
      // A damaged file must stop the server: starting empty would let anyone re-join as any node.
      if (!parsed.success) throw new Error(`${c.path} is not a valid node credential file: ${parsed.error.message}`);
      for (const n of parsed.data.nodes) c.nodes.set(n.node, n);
    }
    opts.logger.debug({ nodes: c.nodes.size }, 'node credentials loaded');
    return c;
  }

  get(node: string): NodeCredential | undefined {
    const n = this.nodes.get(node);
    return n && { ...n };
  }

  list(): NodeCredential[] {
    return [...this.nodes.values()].map((n) => ({ ...n })).sort((a, b) => a.node.localeCompare(b.node));
  }

  /** Records a newly issued certificate as the node's only valid one. */
  async issue(node: string, o: { serial: string; notAfter: Date; state: 'pending' | 'approved'; tokenId?: string; secret?: string; keySha256: string; labels?: Record<string, string> }): Promise<NodeCredential> {
    const at = new Date(this.now()).toISOString();
    const prev = this.nodes.get(node);
    const rec: NodeCredential = {
      node,
      serial: normalSerial(o.serial),
      notAfter: o.notAfter.toISOString(),
      keySha256: o.keySha256,
      labels: o.labels ?? prev?.labels,
      state: o.state,
      tokenId: o.tokenId ?? prev?.tokenId,
      // A renewal on a TLS server issues no password: the old one goes with the old certificate.
      secretSha256: o.secret ? sha256(o.secret) : undefined,
      issuedAt: at,
      changedAt: at,
    };
    await this.save(node, rec);
    return { ...rec };
  }

  /**
   * Approves a pending node; for a revoked one, lets its name join again (the old certificate stays
   * refused: a new join issues a new one, approved at once).
   */
  async approve(node: string): Promise<NodeCredential> {
    const cur = this.nodes.get(node);
    if (!cur) throw new NotFoundError(`node credential "${node}"`);
    const rec: NodeCredential =
      cur.state === 'revoked'
        ? { node, state: 'approved', tokenId: cur.tokenId, changedAt: new Date(this.now()).toISOString() }
        : { ...cur, state: 'approved', changedAt: new Date(this.now()).toISOString() };
    await this.save(node, rec);
    return { ...rec };
  }

  /** Lets a name that never joined (or was revoked) in without waiting for approval once it joins. */
  async preapprove(node: string): Promise<void> {
    const cur = this.nodes.get(node);
    if (cur && cur.state !== 'revoked') return;
    await this.save(node, { node, state: 'approved', changedAt: new Date(this.now()).toISOString() });
  }

  async revoke(node: string): Promise<NodeCredential> {
    const cur = this.nodes.get(node);
    const rec: NodeCredential = { ...(cur ?? { node }), state: 'revoked', secretSha256: undefined, changedAt: new Date(this.now()).toISOString() };
    await this.save(node, rec);
    return { ...rec };
  }

  /** Whether a certificate with `serial` may speak for `node` now. */
  check(node: string, serial: string): CredentialCheck {
    const cur = this.nodes.get(node);
    if (!cur) return 'unknown';
    if (cur.state === 'revoked') return 'revoked';
    if (!cur.serial || cur.serial !== normalSerial(serial)) return 'superseded';
    return cur.state === 'pending' ? 'pending' : 'ok';
  }

  /** Same, for the per-node password of a plain (--insecure) listener. Constant time in the secret. */
  checkSecret(node: string, secret: string): CredentialCheck {
    const cur = this.nodes.get(node);
    if (!cur) return 'unknown';
    if (cur.state === 'revoked') return 'revoked';
    const want = Buffer.from(cur.secretSha256 ?? '0'.repeat(64), 'hex');
    if (!cur.secretSha256 || !timingSafeEqual(want, Buffer.from(sha256(secret), 'hex'))) return 'superseded';
    return cur.state === 'pending' ? 'pending' : 'ok';
  }

  private async save(node: string, rec: NodeCredential): Promise<void> {
    const run = async () => {
      const next = new Map(this.nodes);
      next.set(node, rec);
      await writePrivateFileAtomic(this.path, JSON.stringify({ version: 1, nodes: [...next.values()] }, null, 2) + '\n');
      // Memory follows the disk only once the write succeeded: a failed write changes nothing.
      this.nodes.set(node, rec);
    };
    const p = this.writing.then(run, run);
    this.writing = p.catch(() => undefined);
    await p;
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
