/**
 * Times every runtime call (a podman or nerdctl process, usually) for the agent's /metrics, by verb and
 * outcome, as a wrapper the way bounded.ts bounds them. Wrapped inside the bound, so a call waiting for
 * a slot is not counted as slow podman. Built only when metrics are asked for (--metrics-addr).
 */
import type { ContainerRuntime, ExecResult } from './types.js';

/** ok; error: the runtime threw; timeout: an exec that ran out of time (its command, not the runtime). */
export type RuntimeCallOutcome = 'ok' | 'error' | 'timeout';

export interface RuntimeCallSink {
  runtimeCall(runtime: string, verb: string, outcome: RuntimeCallOutcome, seconds: number): void;
}

/** The calls that reach the runtime; watchExits is a subscription, not a call, and passes through. */
const TIMED = ['version', 'list', 'inspect', 'run', 'start', 'stop', 'remove', 'removeMany', 'logs', 'exec', 'pull', 'images', 'load', 'removeImage', 'tag', 'imageId', 'imageStoreDir', 'bridgeSubnet', 'stats'] as const;

export function timedRuntime(runtime: ContainerRuntime, sink: RuntimeCallSink): ContainerRuntime {
  const timed: Record<string, unknown> = {};
  for (const verb of TIMED) {
    const method = runtime[verb] as ((...a: unknown[]) => Promise<unknown>) | undefined;
    // Optional methods the runtime leaves out stay absent: callers test for them.
    if (typeof method !== 'function') continue;
    timed[verb] = async (...a: unknown[]) => {
      const began = performance.now();
      try {
        const out = await method.apply(runtime, a);
        const outcome = verb === 'exec' && (out as ExecResult).timedOut ? 'timeout' : 'ok';
        sink.runtimeCall(runtime.name, verb, outcome, (performance.now() - began) / 1000);
        return out;
      } catch (err) {
        sink.runtimeCall(runtime.name, verb, 'error', (performance.now() - began) / 1000);
        throw err;
      }
    };
  }
  return new Proxy(runtime, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && Object.hasOwn(timed, prop)) return timed[prop];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
