/**
 * The thin, impure half of the engine: carries out the steps `plan` returned, one executor per
 * action, and records what happened (events for `describe`, restart and failure counts for the next
 * plan and the reports). Steps are independent within one plan (see plan.ts), so a failing step is
 * recorded and the rest still run; nothing here throws.
 */
import type { AgentEvent } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { ContainerRuntime } from '../runtime/types.js';
import { containerKey, type PodRef } from './naming.js';
import type { InvalidContainer, PlanResult, Step, Wait } from './plan.js';
import type { RestartTracker } from './restart-tracker.js';
import { confineSubPaths } from './subpath.js';

/** The server's images (agent/images/manager.ts): what the pull step asks instead of the registry. */
export interface ServerImages {
  /** Whether the current desired state lists `name` among the server's images for this node. */
  serves(name: string): boolean;
  /** Whether `name` is served and its desired archive not loaded yet (even if the runtime has that name). */
  awaiting(name: string): boolean;
  /** The runtime's id of the image the desired state wants under `name`, once loaded. */
  loadedId(name: string): string | undefined;
  /** Resolves once `name` is loaded (fetched first if need be); rejects with the transfer's error. */
  ensure(name: string): Promise<{ fetched: boolean; bytes?: number; seconds?: number }>;
}

export interface ApplyDeps {
  runtime: ContainerRuntime;
  logger: Logger;
  emit: (e: AgentEvent) => void;
  restarts: RestartTracker;
  images?: ServerImages;
}

export interface StepError {
  step: Step;
  error: Error;
}

/** A step carried out; a run's with the new container's id. */
export interface StepDone {
  step: Step;
  id?: string;
}

type Executors = { [A in Step['action']]: (step: Extract<Step, { action: A }>) => Promise<string | void> };

function event(deps: ApplyDeps, pod: PodRef | undefined, type: AgentEvent['type'], reason: string, message: string): void {
  if (!pod) return;
  deps.emit({
    type,
    reason,
    message,
    ts: new Date(deps.restarts.clock()).toISOString(),
    involved: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
  });
}

const REMOVE_MESSAGE: Record<Extract<Step, { action: 'remove' }>['reason'], (container: string) => string> = {
  orphan: (c) => `Stopping container ${c}`,
  'spec-changed': (c) => `Container ${c} definition changed, will be restarted`,
  'image-changed': (c) => `Container ${c} image changed, will be re-created from it`,
  duplicate: (c) => `Stopping duplicate container ${c}`,
};

function seconds(ms: number): string {
  return (ms / 1000).toFixed(ms < 10_000 ? 3 : 1);
}

/** The pull step of a server image: events say where it comes from, how much came and how long it took. */
async function fetchFromServer(deps: ApplyDeps, images: ServerImages, step: Extract<Step, { action: 'pull' }>): Promise<void> {
  for (const p of step.pods) event(deps, p, 'Normal', 'Pulling', `Fetching image "${step.image}" from the server`);
  let r: Awaited<ReturnType<ServerImages['ensure']>>;
  try {
    r = await images.ensure(step.image);
  } catch (err) {
    deps.restarts.pullFailed(step.image, errorMessage(err));
    for (const p of step.pods) event(deps, p, 'Warning', 'Failed', `Failed to fetch image "${step.image}" from the server: ${errorMessage(err)}`);
    throw err;
  }
  deps.restarts.pullSucceeded(step.image);
  const message = r.fetched
    ? `Fetched and loaded image "${step.image}" from the server (${((r.bytes ?? 0) / 1e6).toFixed(1)} MB in ${(r.seconds ?? 0).toFixed(1)} s)`
    : `Image "${step.image}" from the server is loaded`;
  for (const p of step.pods) event(deps, p, 'Normal', 'Pulled', message);
}

function executors(deps: ApplyDeps): Executors {
  const { runtime, restarts } = deps;
  return {
    async pull(step) {
      // An image the server serves comes over the agent's own link, resumable, instead of from a registry.
      if (deps.images?.serves(step.image)) return fetchFromServer(deps, deps.images, step);
      for (const p of step.pods) event(deps, p, 'Normal', 'Pulling', `Pulling image "${step.image}"`);
      const began = performance.now();
      try {
        await runtime.pull(step.image);
      } catch (err) {
        restarts.pullFailed(step.image, errorMessage(err));
        for (const p of step.pods) event(deps, p, 'Warning', 'Failed', `Failed to pull image "${step.image}": ${errorMessage(err)}`);
        throw err;
      }
      restarts.pullSucceeded(step.image);
      const took = seconds(performance.now() - began);
      for (const p of step.pods) event(deps, p, 'Normal', 'Pulled', `Successfully pulled image "${step.image}" in ${took}s`);
    },

    async run(step) {
      let id: string;
      try {
        id = await runtime.run(await confineSubPaths(step.spec));
      } catch (err) {
        restarts.runFailed(step.key, errorMessage(err));
        event(deps, step.pod, 'Warning', 'Failed', `Error: ${errorMessage(err)}`);
        throw err;
      }
      restarts.runSucceeded(step.key);
      event(deps, step.pod, 'Normal', 'Created', `Created container ${step.container}`);
      event(deps, step.pod, 'Normal', 'Started', `Started container ${step.container}`);
      return id;
    },

    async restart(step) {
      // Counted before trying: a container that fails to start must back off like one that crashes.
      restarts.recordRestart(step.key, step.exited);
      try {
        await runtime.start(step.id);
      } catch (err) {
        event(deps, step.pod, 'Warning', 'Failed', `Error: ${errorMessage(err)}`);
        throw err;
      }
      restarts.restarted(step.key);
      event(deps, step.pod, 'Normal', 'Started', `Started container ${step.container}`);
    },

    async remove(step) {
      const label = step.container ?? step.name;
      if (step.running) event(deps, step.pod, 'Normal', 'Killing', REMOVE_MESSAGE[step.reason](label));
      // One runtime call: the stop signal, the grace period, then the kill and the removal.
      await runtime.remove(step.id, step.running ? step.graceSeconds : 0);
      if (step.reason === 'orphan' && step.pod && step.container) restarts.forget(containerKey(step.pod.uid, step.container));
    },
  };
}

/** Runs every step in order; failures are collected, logged and returned, never thrown. */
export async function applySteps(steps: Step[], deps: ApplyDeps): Promise<{ errors: StepError[]; done: StepDone[] }> {
  const table = executors(deps);
  const errors: StepError[] = [];
  const done: StepDone[] = [];
  for (const step of steps) {
    const execute = table[step.action] as (s: Step) => Promise<string | void>;
    deps.logger.debug({ action: step.action, step: describeStep(step) }, 'step start');
    try {
      const id = await execute(step);
      done.push(id ? { step, id } : { step });
      deps.logger.debug({ action: step.action, step: describeStep(step) }, 'step done');
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      deps.logger.warn({ action: step.action, step: describeStep(step), err: error.message }, 'step failed');
      errors.push({ step, error });
    }
  }
  return { errors, done };
}

/** Short human form of a step for logs. */
export function describeStep(step: Step): string {
  switch (step.action) {
    case 'pull':
      return `pull ${step.image}`;
    case 'run':
      return `run ${step.spec.name}`;
    case 'restart':
      return `restart ${step.name}`;
    case 'remove':
      return `remove ${step.name} (${step.reason})`;
  }
}

function waitEvent(w: Wait, restarts: RestartTracker): { marker: string; message: string } | undefined {
  switch (w.reason) {
    case 'CrashLoopBackOff':
      return { marker: w.marker ?? '', message: `Back-off restarting failed container ${w.container} in pod ${w.pod.name}_${w.pod.namespace}(${w.pod.uid})` };
    case 'ImagePullBackOff':
      return { marker: `${w.image}#${restarts.pullFailure(w.image ?? '')?.failures}`, message: `Back-off pulling image "${w.image}"` };
    case 'RunContainerBackOff':
      return { marker: `${restarts.runFailure(w.key)?.failures}`, message: `Back-off starting container ${w.container}` };
  }
}

/**
 * Announces back-offs and invalid specs (Warning events) once per crash or failure rather than on
 * every pass of the loop, then applies the steps.
 */
export async function applyPlan(result: PlanResult, deps: ApplyDeps): Promise<{ errors: StepError[]; done: StepDone[] }> {
  for (const w of result.waits) {
    const e = waitEvent(w, deps.restarts);
    if (e && deps.restarts.announce(`${w.key}#${w.reason}`, e.marker)) event(deps, w.pod, 'Warning', 'BackOff', e.message);
  }
  for (const bad of result.invalid) announceInvalid(bad, deps);
  return applySteps(result.steps, deps);
}

function announceInvalid(bad: InvalidContainer, deps: ApplyDeps): void {
  if (!deps.restarts.announce(`${bad.key}#invalid`, bad.message)) return;
  if (bad.reason === 'ErrImageNeverPull') event(deps, bad.pod, 'Warning', 'ErrImageNeverPull', bad.message);
  else event(deps, bad.pod, 'Warning', 'Failed', `Error: container ${bad.container}: ${bad.message}`);
}
