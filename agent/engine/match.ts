/**
 * Which runtime container stands for which pod container: worked out once per reconcile, pure. The
 * plan decides from it what to remove, restart or run; the reports and the probes read the same
 * result, so all three speak of the same container.
 */
import type { Container } from '../../src/api/pod.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';
import type { RuntimeContainer } from '../runtime/types.js';
import { containerKey, identityOf, isManagedBy, LABELS } from './naming.js';
import { containerSpecHash } from './spec-hash.js';

/** One container of a target pod and the runtime containers found for it. */
export type MatchedContainer = {
  /** containerKey: uid/container. */
  key: string;
  spec: Container;
  /** The container the agent keeps: the current spec first, then running, then the newest. */
  kept?: RuntimeContainer;
  /** The others found under the same key. */
  duplicates: RuntimeContainer[];
} & (
  /** The spec hash the kept container must carry. */
  | { hash: string; hashError?: undefined }
  /** Why the spec cannot be turned into a runtime request at all (an unusable quantity). */
  | { hash?: undefined; hashError: string }
);

export interface MatchedPod {
  pod: DesiredPod;
  /** In the pod spec's order. */
  containers: MatchedContainer[];
}

/** A managed container with no place in the target; `pod` when its pod is still a target. */
export interface Orphan {
  container: RuntimeContainer;
  pod?: DesiredPod;
}

export interface Matching {
  /** In target order. */
  pods: MatchedPod[];
  orphans: Orphan[];
}

/** Epoch ms of an ISO time; 0 when absent or a zero time (podman reports year 1 for "never"). */
export function epochMs(iso: string | undefined): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) || t <= 0 ? 0 : t;
}

/** Orders the containers found for one pod container, the one to keep first: the current spec, then running, then the newest. */
export function rankContainers(containers: RuntimeContainer[], wantedHash?: string): RuntimeContainer[] {
  const score = (c: RuntimeContainer): number[] => [
    wantedHash !== undefined && c.labels[LABELS.specHash] === wantedHash ? 1 : 0,
    c.state === 'running' ? 1 : 0,
    epochMs(c.createdAt),
    epochMs(c.startedAt),
  ];
  return [...containers].sort((a, b) => {
    const sa = score(a);
    const sb = score(b);
    for (let i = 0; i < sa.length; i++) if (sa[i] !== sb[i]) return sb[i]! - sa[i]!;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/**
 * Matches the containers `node`'s agent manages (others in `current` are ignored) to the containers
 * of the target pods.
 */
export function matchContainers(current: RuntimeContainer[], target: DesiredPod[], node: string): Matching {
  const byUid = new Map(target.map((p) => [p.uid, p]));
  const found = new Map<string, RuntimeContainer[]>();
  const orphans: Orphan[] = [];
  for (const c of current) {
    if (!isManagedBy(c, node)) continue;
    const id = identityOf(c);
    const pod = id ? byUid.get(id.pod.uid) : undefined;
    if (!id || !pod || !pod.spec.containers.some((x) => x.name === id.container)) {
      orphans.push({ container: c, pod });
      continue;
    }
    const key = containerKey(id.pod.uid, id.container);
    found.set(key, [...(found.get(key) ?? []), c]);
  }

  const pods = target.map((pod): MatchedPod => ({
    pod,
    containers: pod.spec.containers.map((spec): MatchedContainer => {
      const key = containerKey(pod.uid, spec.name);
      let hashed: { hash: string } | { hashError: string };
      try {
        hashed = { hash: containerSpecHash(pod, spec.name) };
      } catch (err) {
        hashed = { hashError: errorMessage(err) };
      }
      const [kept, ...duplicates] = rankContainers(found.get(key) ?? [], 'hash' in hashed ? hashed.hash : undefined);
      return { key, spec, kept, duplicates, ...hashed };
    }),
  }));
  return { pods, orphans };
}
