/**
 * Each node's current credential: the serial of the one client certificate that may speak for it,
 * and whether it is pending approval, approved or revoked. DATA_DIR/auth/nodes.json (0600, replaced
 * atomically); with several servers on one etcd, one shared document there (server/cluster/doc.ts), so
 * a node joined, approved or revoked through one server is so on every one. A certificate with any other serial (an older one, one issued before a revoke) is
 * refused by the broker even though the CA signed it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { DroverError, NotFoundError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir } from '../../src/util/private-fs.js';
import { fileDoc, readSeeded, type DocVersion, type SharedDoc } from '../cluster/doc.js';
import { normalSerial } from '../pki/x509.js';
import { compareStrings } from '../../src/util/compare.js';

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

/** A change that lost to another server's this many times in a row is given up. */
const MAX_REPLACE_ATTEMPTS = 20;

/** A node's credential as it changed on another server (`after` undefined: the record went). */
export interface CredentialChange {
  node: string;
  before: NodeCredential | undefined;
  after: NodeCredential | undefined;
}

export class NodeCredentials {
  private nodes = new Map<string, NodeCredential>();
  /** The document's version the map was read at (compare-and-swap of the next write). */
  private version = 0;
  private writing: Promise<void> = Promise.resolve();
  /** The text this server is writing: the watch may bring it back before the write returns, and it is not another server's change. */
  private ownWrite: string | undefined;
  private readonly listeners: Array<(c: CredentialChange) => void> = [];

  private constructor(private readonly doc: SharedDoc, private readonly logger: Logger, private readonly now: () => number) {}

  /** DATA_DIR/auth/nodes.json, or `doc` (one etcd key every server shares), followed as it changes. */
  static async open(opts: { dataDir: string; logger: Logger; now?: () => number; doc?: SharedDoc }): Promise<NodeCredentials> {
    const dir = join(opts.dataDir, 'auth');
    await ensurePrivateDir(dir, opts.logger);
    const file = fileDoc(join(dir, 'nodes.json'), opts.logger);
    const c = new NodeCredentials(opts.doc ?? file, opts.logger, opts.now ?? Date.now);
    // A damaged document must stop the server: starting empty would let anyone re-join as any node.
    c.install(opts.doc ? await readSeeded(opts.doc, file, opts.logger) : await file.read());
    c.doc.watch((d) => c.followed(d));
    opts.logger.debug({ nodes: c.nodes.size }, 'node credentials loaded');
    return c;
  }

  /**
   * Called for each node whose credential another server changed (approved, revoked, re-issued), after
   * this server's checks see it: a server cuts the session of a node revoked elsewhere.
   */
  onChange(listener: (c: CredentialChange) => void): void {
    this.listeners.push(listener);
  }

  private parse(text: string): Map<string, NodeCredential> {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new DroverError(`${this.doc.where} is not a valid node credential file: ${errorMessage(err)}`, { cause: err });
    }
    const parsed = file.safeParse(json);
    if (!parsed.success) throw new DroverError(`${this.doc.where} is not a valid node credential file: ${parsed.error.message}`, { cause: parsed.error });
    return new Map(parsed.data.nodes.map((n) => [n.node, n]));
  }

  private install(d: DocVersion): void {
    this.nodes = d.text === undefined ? new Map() : this.parse(d.text);
    this.version = d.version;
  }

  /** A version another server wrote: taken if newer (a damaged one is logged and ignored), each changed node told. */
  private followed(d: DocVersion): void {
    if (d.version <= this.version || (d.text !== undefined && d.text === this.ownWrite)) return;
    const before = this.nodes;
    try {
      this.install(d);
    } catch (err) {
      this.logger.error({ err: errorMessage(err) }, 'ignored a change of the node credentials');
      return;
    }
    for (const node of new Set([...before.keys(), ...this.nodes.keys()])) {
      const was = before.get(node);
      const now = this.nodes.get(node);
      if (JSON.stringify(was) === JSON.stringify(now)) continue;
      this.logger.debug({ node, state: now?.state }, 'node credential changed on another server');
      for (const l of this.listeners) {
        try {
          l({ node, before: was && { ...was }, after: now && { ...now } });
        } catch (err) {
          this.logger.error({ node, err: errorMessage(err) }, 'a listener of node credential changes failed');
        }
      }
    }
  }

  get(node: string): NodeCredential | undefined {
    const n = this.nodes.get(node);
    return n && { ...n };
  }

  list(): NodeCredential[] {
    return [...this.nodes.values()].map((n) => ({ ...n })).sort((a, b) => compareStrings(a.node, b.node));
  }

  /** Records a newly issued certificate as the node's only valid one. */
  async issue(node: string, o: { serial: string; notAfter: Date; state: 'pending' | 'approved'; tokenId?: string; secret?: string; keySha256: string; labels?: Record<string, string> }): Promise<NodeCredential> {
    return this.change(node, (prev) => {
      const at = new Date(this.now()).toISOString();
      return {
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
    });
  }

  /**
   * Approves a pending node; for a revoked one, lets its name join again (the old certificate stays
   * refused: a new join issues a new one, approved at once).
   */
  async approve(node: string): Promise<NodeCredential> {
    return this.change(node, (cur) => {
      if (!cur) throw new NotFoundError(`node credential "${node}"`);
      const changedAt = new Date(this.now()).toISOString();
      return cur.state === 'revoked' ? { node, state: 'approved', tokenId: cur.tokenId, changedAt } : { ...cur, state: 'approved', changedAt };
    });
  }

  /** Lets a name that never joined (or was revoked) in without waiting for approval once it joins. */
  async preapprove(node: string): Promise<void> {
    const cur = this.nodes.get(node);
    if (cur && cur.state !== 'revoked') return;
    await this.change(node, (c) => (c && c.state !== 'revoked' ? undefined : { node, state: 'approved', changedAt: new Date(this.now()).toISOString() }));
  }

  async revoke(node: string): Promise<NodeCredential> {
    return this.change(node, (cur) => ({ ...(cur ?? { node }), state: 'revoked', secretSha256: undefined, changedAt: new Date(this.now()).toISOString() }));
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

  /**
   * Writes the record `make` decides from the node's current one (undefined: nothing to change), one
   * change at a time. When another server changed the document meanwhile, its version is taken and
   * `make` decides again on it (an approve on one server and a revoke on another: the later one wins,
   * decided on what the earlier one wrote).
   */
  private change<R extends NodeCredential | undefined>(node: string, make: (cur: NodeCredential | undefined) => R): Promise<R> {
    const run = async (): Promise<R> => {
      for (let attempt = 1; ; attempt++) {
        const cur = this.nodes.get(node);
        const rec = make(cur && { ...cur });
        if (rec === undefined) return rec;
        const next = new Map(this.nodes);
        next.set(node, rec);
        const text = JSON.stringify({ version: 1, nodes: [...next.values()] }, null, 2) + '\n';
        this.ownWrite = text;
        const r = await this.doc.replace(text, this.version).finally(() => (this.ownWrite = undefined));
        if (r.ok) {
          // Memory follows the document only once the write succeeded (a failed write changes nothing),
          // and not over a newer version the watch brought meanwhile.
          if (r.version >= this.version) {
            this.nodes = next;
            this.version = r.version;
          }
          return { ...rec } as R;
        }
        this.install(r);
        if (attempt >= MAX_REPLACE_ATTEMPTS) throw new DroverError(`${this.doc.where}: changed by other servers ${attempt} times in a row while this change was being written; try again`);
      }
    };
    const p = this.writing.then(run, run);
    this.writing = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
