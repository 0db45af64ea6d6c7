/**
 * The reconcile decision, pure: from the containers the runtime has (current) and the pods bound to
 * this node (target), the steps that move current toward target. No I/O, no clock, no randomness;
 * everything time-dependent arrives in PlanContext, so every case is testable with plain values.
 *
 * The plan is incremental, like balena-supervisor's: a step whose prerequisite is still pending is
 * not returned yet. A changed container is only removed (its replacement is planned once it is gone),
 * a missing image is only pulled (the container runs on the pass after). The caller loops
 * list → plan → apply until a plan has no steps, then sleeps until `requeueAfterMs` or a change.
 */
import type { DesiredPod } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';
import type { RunSpec, RuntimeContainer } from '../runtime/types.js';
import { ConfigError, expandVars, resolveEnv, type RunContext } from './env.js';
import { matchContainers, type Matching } from './match.js';
import { containerLabels, containerName, identityOf, LABELS, type PodRef } from './naming.js';
import { findContainer, recreateFields, specHash } from './spec-hash.js';
import { mountsFor } from './volume-layout.js';
import { serviceHosts } from '../network/hosts.js';
import { POD_IP_LABEL } from '../network/pod-ip-plan.js';

export type { PodRef } from './naming.js';

/** Grace period for containers whose pod is no longer known (the pod spec's own default). */
export const DEFAULT_GRACE_SECONDS = 10;

export type RemoveReason = 'orphan' | 'spec-changed' | 'duplicate' | 'image-changed';

export type Step =
  /** Fetch an image some missing containers need; they run on a later pass. */
  | { action: 'pull'; image: string; pods: PodRef[] }
  /** Create and start a container that does not exist. */
  | { action: 'run'; key: string; pod: PodRef; container: string; spec: RunSpec }
  /** Start an existing container again (it exited, or was created but never started). */
  | { action: 'restart'; key: string; id: string; name: string; pod: PodRef; container: string; exited: RuntimeContainer }
  /** Stop (when running, with the pod's grace period) and remove a container. */
  | {
      action: 'remove';
      id: string;
      name: string;
      reason: RemoveReason;
      running: boolean;
      graceSeconds: number;
      pod?: PodRef;
      container?: string;
    };

export type StepAction = Step['action'];

/** Something the plan deliberately did not do yet because a back-off is running. */
export interface Wait {
  reason: 'CrashLoopBackOff' | 'ImagePullBackOff' | 'RunContainerBackOff';
  key: string;
  pod: PodRef;
  container: string;
  remainingMs: number;
  /** For CrashLoopBackOff: identifies the crash (container id and exit time), so it is announced once. */
  marker?: string;
  /** The container waiting to be restarted (CrashLoopBackOff). */
  exited?: RuntimeContainer;
  image?: string;
}

export interface PlanContext {
  node: string;
  now: number;
  /** Images present on the node: target image references as given, or runtime image names. */
  images: Set<string>;
  /**
   * True for an image the runtime has by name but not with the bytes the desired state asks for (one
   * of the server's images pushed again under the same tag, its new archive not loaded yet): a new
   * container waits for the new one. Running containers are left on the image they have.
   */
  imageStale?: (image: string) => boolean;
  /** The id of the image the desired state wants under `image` (a server image, loaded): a container to restart from another is re-created. */
  imageIdFor?: (image: string) => string | undefined;
  /** ms after `now` until the exited container under `key` may start again; 0 = now. */
  restartBackoff: (key: string, exited: RuntimeContainer, now: number) => number;
  /** ms after `now` until a failed pull of `image` may be retried; 0 (the default) = now. */
  pullBackoff?: (image: string, now: number) => number;
  /** ms after `now` until a failed run of the container under `key` may be retried; 0 (the default) = now. */
  runBackoff?: (key: string, now: number) => number;
  /**
   * imagePullPolicy Always: true when `image` was pulled recently enough to create a container from
   * it without pulling again (default: never, so Always pulls before every new container).
   */
  pulledRecently?: (image: string, now: number) => boolean;
  /** True for a container the agent killed after failed liveness/startup probes: restarted unless the policy is Never. */
  killedUnhealthy?: (id: string) => boolean;
  /** ConfigMaps, Secrets, state dir and host facts for building runtime requests. */
  run?: RunContext;
}

/** A target container that cannot be created as things are (the spec or the node lacks something). */
export interface InvalidContainer {
  key: string;
  pod: PodRef;
  container: string;
  /**
   * CreateContainerConfigError: the spec cannot be turned into a RunSpec (a missing ConfigMap or
   * key, an unusable quantity); ErrImageNeverPull: the image is absent and the policy forbids pulling.
   */
  reason: 'CreateContainerConfigError' | 'ErrImageNeverPull';
  message: string;
}

export interface PlanResult {
  steps: Step[];
  waits: Wait[];
  invalid: InvalidContainer[];
  /** Which runtime container stands for which pod container: what the reports and probes read. */
  matches: Matching;
  /** Re-plan after this long even without a change: the soonest back-off ends then. */
  requeueAfterMs?: number;
}

/**
 * The runtime request for one container of a pod, labels (with spec hash) included: env resolved
 * from the node's ConfigMaps and Secrets and $(VAR)-expanded into command and args, volumes as bind
 * mounts. Throws ConfigError when the node lacks something the container needs.
 */
export function toRunSpec(pod: DesiredPod, container: string, node: string, ctx: RunContext = {}): RunSpec {
  const c = findContainer(pod, container);
  const fields = recreateFields(pod, c);
  const hash = specHash(fields);
  const env = resolveEnv(pod, c, node, ctx);
  // The pod's address goes to its first container only: each container has its own network
  // namespace, and two cannot hold one address.
  const ip = !pod.spec.hostNetwork && pod.spec.containers[0]?.name === c.name ? ctx.podIP?.(pod.uid) : undefined;
  const labels = containerLabels(podRef(pod), c.name, node, hash);
  if (ip) labels[POD_IP_LABEL] = ip;
  const spec: RunSpec = {
    name: containerName(pod.namespace, pod.name, c.name, pod.uid),
    image: c.image,
    command: fields.command?.map((s) => expandVars(s, env)),
    args: fields.args?.map((s) => expandVars(s, env)),
    env,
    workingDir: fields.workingDir,
    ports: fields.ports,
    labels,
    memoryBytes: fields.memoryBytes,
    cpuMilli: fields.cpuMilli,
    hostNetwork: fields.hostNetwork,
    mounts: mountsFor(pod, c, ctx),
    devices: fields.devices,
    ...(pod.spec.hostname ? { hostname: pod.spec.hostname } : {}),
    // Not in the spec hash: a Service created later must not re-create running containers.
    ...(ctx.services?.length && !pod.spec.hostNetwork ? { hosts: serviceHosts(ctx.services, pod.namespace) } : {}),
    ...(ip ? { ip } : {}),
  };
  return spec;
}

export function podRef(pod: DesiredPod): PodRef {
  return { uid: pod.uid, namespace: pod.namespace, name: pod.name };
}

/**
 * Whether the restart policy asks to start this container again. A container that was created but
 * never started failed to start: that is retried whatever the policy (as kubelet retries create
 * errors), since the policy is about containers that ran.
 */
export function wantsRestart(c: RuntimeContainer, restartPolicy: DesiredPod['spec']['restartPolicy'], killedUnhealthy = false): boolean {
  if (c.state === 'created') return true;
  if (c.state !== 'exited') return false;
  if (restartPolicy === 'Always') return true;
  // Killed for failing its liveness probe: restarted whatever its exit code, as the kubelet does.
  if (killedUnhealthy && restartPolicy === 'OnFailure') return true;
  // An unknown exit code is treated as a failure: restarting is the safer guess.
  if (restartPolicy === 'OnFailure') return c.exitCode !== 0;
  return false;
}

/** The reference with the ":latest" tag the runtime assumes when none (and no digest) is given. */
function withTag(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastSlash = ref.lastIndexOf('/');
  return ref.slice(lastSlash + 1).includes(':') ? ref : `${ref}:latest`;
}

/**
 * The names a short reference may be stored under: podman keeps fully qualified names
 * ("docker.io/library/nginx:latest", "localhost/app:1") while manifests often say "nginx".
 */
function imageCandidates(ref: string): string[] {
  const tagged = withTag(ref);
  const first = tagged.split('/')[0]!;
  const hasRegistry = tagged.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasRegistry) return [ref, tagged];
  const out = [ref, tagged, `docker.io/${tagged}`, `localhost/${tagged}`];
  if (!tagged.includes('/')) out.push(`docker.io/library/${tagged}`);
  return out;
}

export function imagePresent(images: Set<string>, ref: string): boolean {
  return imageCandidates(ref).some((c) => images.has(c));
}

/** The kubelet's message for ErrImageNeverPull. */
export function neverPullMessage(image: string): string {
  return `Container image "${image}" is not present with pull policy of Never`;
}

export { ConfigError };

/**
 * A stopped first container holding an address the agent gave up (refused as taken when it started
 * again): it is re-created with the pod's new one. A running one keeps its address.
 */
function movedAddress(c: RuntimeContainer, pod: DesiredPod, container: string, run: RunContext | undefined): boolean {
  const had = c.labels[POD_IP_LABEL];
  if (!had || c.state === 'running' || pod.spec.containers[0]?.name !== container) return false;
  const now = run?.podIP?.(pod.uid);
  return now !== undefined && now !== had;
}

export function plan(current: RuntimeContainer[], target: DesiredPod[], ctx: PlanContext): PlanResult {
  const removes: Step[] = [];
  const restarts: Step[] = [];
  const runs: Step[] = [];
  const pulls = new Map<string, PodRef[]>();
  const waits: Wait[] = [];
  const invalid: InvalidContainer[] = [];
  const matches = matchContainers(current, target, ctx.node);

  const remove = (c: RuntimeContainer, reason: RemoveReason, pod: DesiredPod | undefined): void => {
    const id = identityOf(c);
    removes.push({
      action: 'remove',
      id: c.id,
      name: c.name,
      reason,
      running: c.state === 'running' || c.state === 'paused' || c.state === 'stopping',
      graceSeconds: pod?.spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS,
      pod: pod ? podRef(pod) : id?.pod,
      container: id?.container,
    });
  };

  for (const o of matches.orphans) remove(o.container, 'orphan', o.pod);

  for (const { pod, containers } of matches.pods) {
    const ref = podRef(pod);
    for (const m of containers) {
      const { key, spec: c, kept: keep } = m;
      const { name } = c;
      if (m.hash === undefined) {
        // A spec the runtime cannot be asked for (say cpu: "1Gi" passed the schema) blocks only this
        // container; whatever already runs for it is left alone.
        invalid.push({ key, pod: ref, container: name, reason: 'CreateContainerConfigError', message: m.hashError });
        continue;
      }

      if (keep) {
        for (const x of m.duplicates) remove(x, 'duplicate', pod);
        if (keep.labels[LABELS.specHash] !== m.hash || movedAddress(keep, pod, name, ctx.run)) {
          remove(keep, 'spec-changed', pod);
          continue;
        }
        // A restart starts the existing container again: it keeps the env and mounts it was created
        // with, so nothing needs resolving here (a deleted ConfigMap does not stop a restart).
        if (!wantsRestart(keep, pod.spec.restartPolicy, ctx.killedUnhealthy?.(keep.id))) continue;
        const ms = ctx.restartBackoff(key, keep, ctx.now);
        if (ms > 0) {
          waits.push({
            reason: 'CrashLoopBackOff',
            key,
            pod: ref,
            container: name,
            remainingMs: ms,
            marker: `${keep.id}@${keep.finishedAt ?? ''}`,
            exited: keep,
          });
        } else if (c.imagePullPolicy !== 'Never' && ctx.imageStale?.(c.image)) {
          // A server image pushed again under its tag: as the kubelet's restart (a new container from
          // the name), this one starts again from the new image, so it waits for it.
          const pms = ctx.pullBackoff?.(c.image, ctx.now) ?? 0;
          if (pms > 0) waits.push({ reason: 'ImagePullBackOff', key, pod: ref, container: name, remainingMs: pms, image: c.image });
          else pulls.set(c.image, [...(pulls.get(c.image) ?? []).filter((p) => p.uid !== pod.uid), ref]);
        } else if (c.imagePullPolicy !== 'Never' && keep.imageId && ctx.imageIdFor?.(c.image) && ctx.imageIdFor(c.image) !== keep.imageId) {
          // Created from the image the name meant before: re-created (on a later pass) from the new one.
          remove(keep, 'image-changed', pod);
        } else {
          restarts.push({ action: 'restart', key, id: keep.id, name: keep.name, pod: ref, container: name, exited: keep });
        }
        continue;
      }

      // A new container: the image first (as the kubelet: pull, then generate the config).
      const policy = c.imagePullPolicy ?? 'IfNotPresent';
      const named = imagePresent(ctx.images, c.image);
      if (policy === 'Never' && !named) {
        invalid.push({ key, pod: ref, container: name, reason: 'ErrImageNeverPull', message: neverPullMessage(c.image) });
        continue;
      }
      // Never fetches nothing: it runs whatever the name means here.
      const present = named && (policy === 'Never' || !ctx.imageStale?.(c.image));
      if (!present || (policy === 'Always' && !ctx.pulledRecently?.(c.image, ctx.now))) {
        const ms = ctx.pullBackoff?.(c.image, ctx.now) ?? 0;
        if (ms > 0) {
          waits.push({ reason: 'ImagePullBackOff', key, pod: ref, container: name, remainingMs: ms, image: c.image });
        } else {
          const pods = pulls.get(c.image) ?? [];
          if (!pods.some((p) => p.uid === pod.uid)) pods.push(ref);
          pulls.set(c.image, pods);
        }
        continue;
      }

      let spec: RunSpec;
      try {
        spec = toRunSpec(pod, name, ctx.node, ctx.run);
      } catch (err) {
        invalid.push({ key, pod: ref, container: name, reason: 'CreateContainerConfigError', message: errorMessage(err) });
        continue;
      }
      const ms = ctx.runBackoff?.(key, ctx.now) ?? 0;
      if (ms > 0) {
        waits.push({ reason: 'RunContainerBackOff', key, pod: ref, container: name, remainingMs: ms, image: spec.image });
      } else {
        runs.push({ action: 'run', key, pod: ref, container: name, spec });
      }
    }
  }

  // Removes first: they free names and host ports the others may need. Pulls last: they are slow,
  // and containers that can start now should not wait behind a download.
  const steps: Step[] = [
    ...removes,
    ...restarts,
    ...runs,
    ...[...pulls].map(([image, pods]): Step => ({ action: 'pull', image, pods })),
  ];
  const requeueAfterMs = waits.length ? Math.min(...waits.map((w) => w.remainingMs)) : undefined;
  return { steps, waits, invalid, matches, requeueAfterMs };
}
