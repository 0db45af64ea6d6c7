/**
 * Leader election among drover servers sharing one etcd, with controller-runtime's semantics (lease
 * duration, renew deadline, retry period) on an etcd lease instead of a Lease object:
 *
 * - The leader holds one key (`name`, e.g. /drover/leader) whose value is its identity, attached to an
 *   etcd lease of `leaseDurationSeconds`. Candidates create the key only where it does not exist (one
 *   transaction), so at most one holds it; the key goes when the lease expires or is revoked.
 * - The leader renews the lease every retry period. If no renewal has succeeded for `renewDeadlineSeconds`
 *   (counted from when the last successful one was SENT), it stops acting: etcd counts the lease from
 *   when it receives a keep-alive, never earlier, so the lease is still alive then and no other server can
 *   hold the key yet. The gap (lease duration - renew deadline) is what stopping has to fit in.
 * - Writes are fenced: `fenceCompare()` is an etcd compare on the key's create revision, true only while
 *   this server's term holds it; a datastore that adds it to every write transaction cannot write after
 *   the lease is gone, whatever this process believes.
 * - close() resigns (revokes the lease, which deletes the key) after onStoppedLeading has run, so a clean
 *   stop hands over within one retry period of the others.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Etcd3, type ICompare } from 'etcd3';
import { faultPolicies } from '../store/etcd-faults.js';
import { backoffDelay, sleep, withTimeout } from '../../src/util/backoff.js';
import { DroverError, NotLeaderError, TimeoutError, ValidationError, errorMessage, type FieldCause } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

/** controller-runtime's defaults (leaderelection: 15 s, 10 s, 2 s). */
export const DEFAULT_LEASE_DURATION_SECONDS = 15;
export const DEFAULT_RENEW_DEADLINE_SECONDS = 10;
export const DEFAULT_RETRY_PERIOD_SECONDS = 2;
export const DEFAULT_LEADER_KEY = '/drover/leader';

export interface LeaderElectionOptions {
  /** etcd client URLs; or `client`, an Etcd3 client the caller owns (not closed by close()). */
  endpoints?: string[];
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  client?: Etcd3;
  /** The key the leader holds, e.g. /drover/leader. */
  name?: string;
  /** This server's identity, unique per process (defaultIdentity()). */
  identity: string;
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  logger: Logger;
  /** Called once leadership is won; `signal` aborts when it is lost or the election closes. */
  onStartedLeading?: (signal: AbortSignal) => void | Promise<void>;
  /** Called when leadership ends (before close() resigns); `reason` says why. */
  onStoppedLeading?: (reason: string) => void | Promise<void>;
  /** The holder changed (undefined: nobody holds the key as far as this server saw). */
  onNewLeader?: (identity: string | undefined) => void;
}

/** What a write must compare to stay fenced: the leader key still exists with this create revision. */
export interface LeadershipFence {
  key: string;
  createRevision: string;
  leaseId: string;
}

/** What /healthz or a `get leases`-like listing shows. */
export interface LeaderStatus {
  identity: string;
  key: string;
  leading: boolean;
  /** The holder as last seen in etcd (this server while it leads). */
  leader: string | undefined;
  leaseDurationSeconds: number;
  /** While leading: when the lease was last renewed (ISO time of the keep-alive's sending). */
  renewTime?: string;
  acquireTime?: string;
  /** Times this server became leader. */
  leaderTransitions: number;
}

/** hostname_pid_random: two servers on one host, or one restarted, never share an identity. */
export function defaultIdentity(): string {
  return `${hostname()}_${process.pid}_${randomBytes(4).toString('hex')}`;
}

interface Timings {
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
}

/** The timings, checked as controller-runtime checks them; ValidationError naming the flag otherwise. */
export function leaderTimings(o: Partial<Timings>): Timings {
  const t: Timings = {
    leaseDurationSeconds: o.leaseDurationSeconds ?? DEFAULT_LEASE_DURATION_SECONDS,
    renewDeadlineSeconds: o.renewDeadlineSeconds ?? DEFAULT_RENEW_DEADLINE_SECONDS,
    retryPeriodSeconds: o.retryPeriodSeconds ?? DEFAULT_RETRY_PERIOD_SECONDS,
  };
  const problems: FieldCause[] = [];
  // etcd leases are whole seconds: a fraction would be rounded by etcd, not by us.
  if (!Number.isInteger(t.leaseDurationSeconds) || t.leaseDurationSeconds < 2) problems.push({ field: 'leader-elect-lease-duration', message: `must be a whole number of seconds >= 2, got ${t.leaseDurationSeconds}` });
  if (!(t.renewDeadlineSeconds > 0)) problems.push({ field: 'leader-elect-renew-deadline', message: `must be > 0 seconds, got ${t.renewDeadlineSeconds}` });
  if (!(t.retryPeriodSeconds > 0)) problems.push({ field: 'leader-elect-retry-period', message: `must be > 0 seconds, got ${t.retryPeriodSeconds}` });
  if (problems.length === 0) {
    // The renew deadline must end before the lease does (time to stop acting), and leave room for renewals.
    if (t.renewDeadlineSeconds >= t.leaseDurationSeconds) problems.push({ field: 'leader-elect-renew-deadline', message: `must be less than the lease duration (${t.leaseDurationSeconds} s), got ${t.renewDeadlineSeconds}` });
    if (t.renewDeadlineSeconds <= 1.2 * t.retryPeriodSeconds) problems.push({ field: 'leader-elect-renew-deadline', message: `must be more than 1.2 x the retry period (${t.retryPeriodSeconds} s), got ${t.renewDeadlineSeconds}` });
  }
  if (problems.length > 0) throw new ValidationError(problems, 'invalid leader election options');
  return t;
}

/** One leadership: the lease and key this server holds, and the signal its work runs under. */
interface Term {
  leaseId: string;
  createRevision: string;
  abort: AbortController;
  /** performance.now() when the last successful renewal (or the grant) was sent. */
  renewedAt: number;
  acquiredAt: number;
  deadline: NodeJS.Timeout | undefined;
  /** onStoppedLeading then the resignation; set once the term ends. */
  ended?: Promise<void>;
}

export class LeaderElection {
  readonly identity: string;
  readonly key: string;
  readonly timings: Timings;
  private readonly etcd: Etcd3;
  private readonly ownsClient: boolean;
  private readonly logger: Logger;
  private readonly keyBuf: Buffer;
  private term: Term | undefined;
  private holder: string | undefined;
  private transitions = 0;
  private closed = false;
  private readonly closing = new AbortController();
  private loop: Promise<void> | undefined;
  private unreachableSince: number | undefined;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.timings = leaderTimings(opts);
    const problems: FieldCause[] = [];
    const key = opts.name ?? DEFAULT_LEADER_KEY;
    if (!key.startsWith('/')) problems.push({ field: 'name', message: `must start with '/', got "${key}"` });
    if (!opts.identity) problems.push({ field: 'identity', message: 'must not be empty' });
    if (!opts.client && !(opts.endpoints && opts.endpoints.length > 0)) problems.push({ field: 'endpoints', message: 'names no etcd endpoint' });
    if (problems.length > 0) throw new ValidationError(problems, 'invalid leader election options');
    this.identity = opts.identity;
    this.key = key;
    this.keyBuf = Buffer.from(key);
    this.logger = opts.logger.child({ component: 'leader-election', key, identity: opts.identity });
    this.ownsClient = !opts.client;
    const tls = opts.tls;
    this.etcd =
      opts.client ??
      new Etcd3({
        hosts: opts.endpoints!,
        ...(tls && (tls.ca || tls.cert) ? { credentials: { rootCertificate: tls.ca as Buffer, privateKey: tls.key, certChain: tls.cert } } : {}),
        grpcOptions: {
          // A member gone silent (partition) fails the connection within seconds, not the OS's minutes.
          'grpc.keepalive_time_ms': 2_000,
          'grpc.keepalive_timeout_ms': 2_000,
          'grpc.initial_reconnect_backoff_ms': 200,
          'grpc.max_reconnect_backoff_ms': 1_000,
        },
        faultHandling: faultPolicies(opts.endpoints!),
      });
  }

  /** Starts campaigning; returns at once (callbacks say when leadership comes and goes). */
  start(): void {
    if (this.loop || this.closed) return;
    this.logger.info({ ...this.timings }, 'leader election: campaigning');
    this.loop = this.run();
  }

  isLeader(): boolean {
    return this.term !== undefined && this.term.ended === undefined;
  }

  /** The holder's identity as last seen (this server's while it leads). */
  leader(): string | undefined {
    return this.isLeader() ? this.identity : this.holder;
  }

  /** The key and create revision a write must compare while this server leads; undefined otherwise. */
  fence(): LeadershipFence | undefined {
    const t = this.term;
    if (!t || t.ended) return undefined;
    return { key: this.key, createRevision: t.createRevision, leaseId: t.leaseId };
  }

  /**
   * The etcd compare of fence(), for a write transaction's `compare` list: true only while this term's
   * key exists. Not leading: a compare that never holds (create revision -1), so a write made by a
   * server that lost leadership fails instead of going through unfenced.
   */
  fenceCompare(): ICompare {
    const f = this.fence();
    return { key: this.keyBuf, target: 'Create', result: 'Equal', create_revision: f ? f.createRevision : '-1' };
  }

  /** A NotLeaderError for a fenced write that failed its compare. */
  notLeaderError(): NotLeaderError {
    return new NotLeaderError(`this server (${this.identity}) no longer leads (${this.key} is held by ${this.holder ?? 'nobody'}); the write was not made`);
  }

  status(): LeaderStatus {
    const t = this.isLeader() ? this.term : undefined;
    const iso = (mono: number) => new Date(Date.now() - (performance.now() - mono)).toISOString();
    return {
      identity: this.identity,
      key: this.key,
      leading: t !== undefined,
      leader: this.leader(),
      leaseDurationSeconds: this.timings.leaseDurationSeconds,
      ...(t ? { renewTime: iso(t.renewedAt), acquireTime: iso(t.acquiredAt) } : {}),
      leaderTransitions: this.transitions,
    };
  }

  /** Stops campaigning; a leader stops acting (onStoppedLeading) and then resigns so another takes over at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    await this.loop;
    if (this.term) await this.endTerm(this.term, 'the election was closed (server stopping)');
    if (this.ownsClient) this.etcd.close();
  }

  private ms(seconds: number): number {
    return seconds * 1000;
  }

  /** A call bounded by `ms` (grpc's deadline, and a timer in case a stream ignores it). */
  private async bounded<T>(what: string, ms: number, call: (o: { deadline: Date }) => Promise<T>): Promise<T> {
    const budget = Math.max(1, Math.round(ms));
    return withTimeout(call({ deadline: new Date(Date.now() + budget) }), budget + 50, () => {
      throw new TimeoutError(`etcd did not answer ${what} within ${budget} ms`);
    });
  }

  private async run(): Promise<void> {
    const retryMs = this.ms(this.timings.retryPeriodSeconds);
    while (!this.closed) {
      if (this.isLeader()) await this.renew(this.term!);
      else await this.tryAcquire();
      if (this.closed) break;
      // controller-runtime's jittered retry (up to 20 % earlier), so candidates do not ask in lockstep.
      await sleep(backoffDelay(0, { baseMs: retryMs, maxMs: retryMs, jitter: 0.2 }), this.closing.signal);
    }
  }

  private seen(holder: string | undefined): void {
    if (holder === this.holder) return;
    this.holder = holder;
    this.logger.info({ leader: holder ?? null }, holder === undefined ? 'leader election: no leader' : holder === this.identity ? 'leader election: this server leads' : 'leader election: another server leads');
    this.opts.onNewLeader?.(holder);
  }

  private unreachable(err: unknown, while_: string): void {
    if (this.unreachableSince === undefined) {
      this.unreachableSince = performance.now();
      this.logger.warn({ err: errorMessage(err) }, `leader election: etcd failing while ${while_}; retrying every retry period`);
    }
  }

  private reachable(): void {
    if (this.unreachableSince === undefined) return;
    this.logger.info({ afterMs: Math.round(performance.now() - this.unreachableSince) }, 'leader election: etcd answers again');
    this.unreachableSince = undefined;
  }

  /** One attempt: read the key; where nobody holds it, create it on a fresh lease in one transaction. */
  private async tryAcquire(): Promise<void> {
    const callMs = this.ms(this.timings.renewDeadlineSeconds);
    let leaseId: string | undefined;
    try {
      const r = await this.bounded('a read of the leader key', callMs, (o) => this.etcd.kv.range({ key: this.keyBuf }, o));
      this.reachable();
      const kv = r.kvs[0];
      if (kv && kv.value.toString('utf8') === this.identity) {
        // This process's own key from a term that ended (renew deadline passed, the resignation not through):
        // identities are unique per process, so it is stale; revoking it lets the next attempt (anyone's) win.
        this.seen(undefined);
        return await this.resignNow(String(kv.lease), 'a key of an ended term');
      }
      if (kv) return this.seen(kv.value.toString('utf8'));
      // The lease counts from etcd's receipt of the grant, so from here at the earliest: the renew deadline runs from now.
      const sentAt = performance.now();
      const g = await this.bounded('a lease grant', callMs, (o) => this.etcd.leaseClient.leaseGrant({ TTL: this.timings.leaseDurationSeconds }, o));
      leaseId = String(g.ID);
      // Shorter than asked, the renew deadline could outlast the lease: never lead on it.
      if (Number(g.TTL) < this.timings.leaseDurationSeconds) throw new DroverError(`etcd granted a ${g.TTL} s lease for ${this.timings.leaseDurationSeconds} s asked`, { reason: 'LeaseTooShort' });
      const t = await this.bounded('the leader key transaction', callMs, (o) =>
        this.etcd.kv.txn(
          {
            compare: [{ key: this.keyBuf, target: 'Create', result: 'Equal', create_revision: 0 }],
            success: [{ request_put: { key: this.keyBuf, value: Buffer.from(this.identity), lease: leaseId } }],
            failure: [{ request_range: { key: this.keyBuf } }],
          },
          o,
        ),
      );
      if (!t.succeeded) {
        const other = t.responses[0]?.response_range?.kvs[0];
        this.seen(other?.value.toString('utf8'));
        this.resign(leaseId, 'lost the race for the leader key');
        return;
      }
      if (this.closed) return await this.resignNow(leaseId, 'closed while acquiring');
      const createRevision = String(t.header.revision);
      leaseId = undefined;
      this.begin(String(g.ID), createRevision, sentAt);
    } catch (err) {
      this.unreachable(err, 'campaigning');
      // A grant or transaction whose answer did not come may have landed: revoking the lease removes a key it made.
      if (leaseId) this.resign(leaseId, 'acquiring failed');
    }
  }

  private begin(leaseId: string, createRevision: string, sentAt: number): void {
    const term: Term = { leaseId, createRevision, abort: new AbortController(), renewedAt: sentAt, acquiredAt: sentAt, deadline: undefined };
    this.term = term;
    this.transitions++;
    this.arm(term);
    this.logger.info({ leaseId, createRevision }, 'leader election: became leader');
    this.seen(this.identity);
    this.callback('onStartedLeading', () => this.opts.onStartedLeading?.(term.abort.signal));
  }

  /** The renew deadline, from the last successful renewal: on expiry the term ends whatever calls are in flight. */
  private arm(term: Term): void {
    clearTimeout(term.deadline);
    const left = term.renewedAt + this.ms(this.timings.renewDeadlineSeconds) - performance.now();
    term.deadline = setTimeout(() => void this.endTerm(term, `no renewal succeeded within the renew deadline (${this.timings.renewDeadlineSeconds} s)`), Math.max(0, left));
  }

  private async renew(term: Term): Promise<void> {
    const sentAt = performance.now();
    const left = term.renewedAt + this.ms(this.timings.renewDeadlineSeconds) - sentAt;
    try {
      const ttl = await this.bounded('a lease keep-alive', left, (o) => this.keepAliveOnce(term.leaseId, o));
      if (term.ended) return;
      if (ttl <= 0) return void this.endTerm(term, 'etcd says the lease expired or was revoked');
      // The key could also have been deleted by hand (etcdctl del): the lease alone does not say.
      const r = await this.bounded('a read of the leader key', left - (performance.now() - sentAt), (o) => this.etcd.kv.range({ key: this.keyBuf }, o));
      if (term.ended) return;
      const kv = r.kvs[0];
      if (!kv || String(kv.create_revision) !== term.createRevision) {
        this.seen(kv?.value.toString('utf8'));
        return void this.endTerm(term, 'the leader key is no longer this term\'s');
      }
      this.reachable();
      term.renewedAt = sentAt;
      this.arm(term);
    } catch (err) {
      // The renew deadline ended the term while this renewal was in flight: the step-down is logged, this says why.
      if (term.ended) return void this.logger.warn({ err: errorMessage(err) }, 'leader election: the renewal in flight at the renew deadline failed');
      this.unreachable(err, 'renewing');
      this.logger.warn({ err: errorMessage(err), msLeft: Math.round(term.renewedAt + this.ms(this.timings.renewDeadlineSeconds) - performance.now()) }, 'leader election: renewal failed');
    }
  }

  private async keepAliveOnce(leaseId: string, o: { deadline: Date }): Promise<number> {
    const stream = await this.etcd.leaseClient.leaseKeepAlive(o);
    try {
      return await new Promise<number>((resolve, reject) => {
        stream.on('data', (res: { TTL: string | number }) => resolve(Number(res.TTL)));
        stream.on('error', reject);
        stream.write({ ID: leaseId });
      });
    } finally {
      stream.end();
    }
  }

  /**
   * Ends a term once: stop acting first (the signal, then onStoppedLeading), then resign so the key goes
   * at once; a resignation that cannot reach etcd leaves the lease to expire.
   */
  private endTerm(term: Term, reason: string): Promise<void> {
    if (term.ended) return term.ended;
    clearTimeout(term.deadline);
    term.ended = (async () => {
      this.logger.warn({ reason, leaseId: term.leaseId }, 'leader election: stopped leading');
      term.abort.abort(new NotLeaderError(`stopped leading: ${reason}`));
      if (this.holder === this.identity) this.seen(undefined);
      await this.callbackAwait('onStoppedLeading', () => this.opts.onStoppedLeading?.(reason));
      await this.resignNow(term.leaseId, reason);
      if (this.term === term) this.term = undefined;
    })();
    return term.ended;
  }

  private resign(leaseId: string, why: string): void {
    void this.resignNow(leaseId, why);
  }

  private async resignNow(leaseId: string, why: string): Promise<void> {
    try {
      await this.bounded('the lease revocation', this.ms(this.timings.retryPeriodSeconds), (o) => this.etcd.leaseClient.leaseRevoke({ ID: leaseId }, o));
      this.logger.debug({ leaseId, why }, 'leader election: lease revoked');
    } catch (err) {
      // Already expired, or etcd unreachable: either way the key goes when the lease ends.
      this.logger.debug({ leaseId, why, err: errorMessage(err) }, 'leader election: lease not revoked; it expires by itself');
    }
  }

  private callback(name: string, fn: () => void | Promise<void>): void {
    void this.callbackAwait(name, fn);
  }

  private async callbackAwait(name: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logger.error({ err }, `leader election: ${name} failed`);
    }
  }
}
