import type { KindMap, KnownKind } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { readValid } from '../../src/api/validate.js';
import { ValidationError } from '../../src/util/errors.js';
import type { ControllerDeps } from './deps.js';

/** An object read from the store, checked before a controller acts on it; undefined = not valid. */
export type ValidStored = <K extends KnownKind>(kind: K, obj: ApiObject) => Promise<KindMap[K] | undefined>;

/**
 * How every controller validates what it is about to act on. A stored object that fails its
 * kind's schema (written before a schema change, or by hand into the data dir) is not acted on: it
 * gets a Warning event `InvalidObject` naming each failing field (one Event, counted, however often
 * it is looked at) and the reconcile ends without error. Throwing instead would retry it with backoff
 * forever while nothing can change the outcome; the next change to the object brings it back.
 * Validated: the object a controller owns (Deployment, ReplicaSet, DaemonSet, Job) and the
 * ReplicaSets a Deployment rolls between. Pods are only counted and are not parsed again on every
 * sync: only the API and these controllers write them, both from validated objects.
 */
export function validStored(deps: Pick<ControllerDeps, 'events' | 'logger'>, component: string): ValidStored {
  return async (kind, obj) => {
    try {
      return readValid(kind, obj);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      const { namespace, name, uid } = obj.metadata;
      deps.logger.warn({ kind, namespace, name, err: err.message, component }, 'invalid object in the store; not acted on');
      await deps.events.record({
        involved: { kind, namespace, name, uid },
        type: 'Warning',
        reason: 'InvalidObject',
        message: `${err.message}; fix it (apply a corrected manifest) or delete it`,
        component,
      });
      return undefined;
    }
  };
}
