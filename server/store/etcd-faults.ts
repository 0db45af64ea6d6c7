/*
 * How EtcdStore meets etcd failing: which errors mean "unreachable" (StoreUnavailableError), which
 * requests may be sent again, and the etcd3 client's fault policies (member pass-over, retry to the
 * next member). The policies have cockatiel's shape, which the client's connection pool calls
 * (`execute` only); cockatiel itself is the client's dependency, not drover's.
 */
import { GRPCCancelledError, GRPCDeadlineExceededError, GRPCUnavailableError, isRecoverableError, type IOptions } from 'etcd3';
import { backoffDelay, sleep } from '../../src/util/backoff.js';
import { errorMessage } from '../../src/util/errors.js';

/** A member whose connection failed is passed over for this long while another one is left. */
const MEMBER_PASS_OVER_MS = 2_000;
/** Waits between attempts while the cluster elects a leader. */
const NO_LEADER_BACKOFF = { baseMs: 50, maxMs: 500 };
const NO_LEADER_ATTEMPTS = 12;

/** etcd answered, or could not be asked, in a way that says nothing about the request itself. */
export function isUnreachable(err: unknown): boolean {
  // Our own cancellation (a watch closed) says nothing about the member.
  if (err instanceof GRPCCancelledError || /CANCELLED|Cancelled on client/.test(errorMessage(err))) return false;
  if (err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError) return true;
  if (err instanceof Error && (isRecoverableError(err) || err.name === 'BrokenCircuitError' || err instanceof MemberPassedOver)) return true;
  return /etcdserver: (no leader|leader changed|request timed out|too many requests|server stopped)|ECONNREFUSED|No connection established|Deadline exceeded/i.test(errorMessage(err));
}

/** The request never left: connection refused, no connection, or the member was passed over. */
export function notSent(err: unknown): boolean {
  return err instanceof MemberPassedOver || /No connection established|ECONNREFUSED|Failed to connect/i.test(errorMessage(err));
}

/** The request may have reached a member, and no answer came: it may or may not have been applied. */
export function outcomeUnknown(err: unknown): boolean {
  if (notSent(err)) return false;
  return err instanceof GRPCDeadlineExceededError || err instanceof GRPCUnavailableError || /Deadline exceeded|etcdserver: request timed out|Connection dropped|ECONNRESET/i.test(errorMessage(err));
}

/** The member refused without acting: the cluster has no leader at the moment (an election is on). */
function noLeader(err: unknown): boolean {
  return /etcdserver: (no leader|leader changed)/.test(errorMessage(err));
}

class MemberPassedOver extends Error {
  constructor(host: string) {
    super(`${host} failed moments ago; trying another member`);
  }
}

/**
 * The etcd3 client's fault policies (cockatiel's shape; the pool only calls `execute`). Per member:
 * one whose connection failed is passed over for a while, unless every member is. Per call: the next
 * member after a request that never left, and a short wait while the cluster has no leader; never
 * a retry of a request a member may have applied (its outcome is the caller's to learn).
 */
export function faultPolicies(endpoints: string[]): NonNullable<IOptions['faultHandling']> {
  const failedAt = new Map<string, number>();
  const passedOver = (host: string) => Date.now() - (failedAt.get(host) ?? -Infinity) < MEMBER_PASS_OVER_MS;
  const context = () => ({ signal: new AbortController().signal, attempt: 0 });
  const host = (name: string) => ({
    async execute<T>(fn: (ctx: unknown) => Promise<T> | T): Promise<T> {
      if (passedOver(name) && !endpoints.every(passedOver)) throw new MemberPassedOver(name);
      try {
        const result = await fn(context());
        failedAt.delete(name);
        return result;
      } catch (err) {
        if (isUnreachable(err) && !noLeader(err)) failedAt.set(name, Date.now());
        throw err;
      }
    },
  });
  const global = {
    async execute<T>(fn: (ctx: unknown) => Promise<T> | T): Promise<T> {
      for (let attempt = 0; ; attempt++) {
        try {
          return await fn({ ...context(), attempt });
        } catch (err) {
          if (notSent(err) && attempt + 1 < endpoints.length) continue;
          if (noLeader(err) && attempt < NO_LEADER_ATTEMPTS) {
            await sleep(backoffDelay(attempt, NO_LEADER_BACKOFF));
            continue;
          }
          throw err;
        }
      }
    },
  };
  return { host, global } as unknown as NonNullable<IOptions['faultHandling']>;
}
