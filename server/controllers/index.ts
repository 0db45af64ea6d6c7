import type { Controller } from './runner.js';
import type { ControllerDeps } from './deps.js';
import { deploymentController } from './deployment.js';
import { replicaSetController } from './replicaset.js';
import { daemonSetController } from './daemonset.js';
import { jobController } from './job.js';
import { garbageCollector } from './gc.js';
import { eventExpiryController } from './event-expiry.js';
import { endpointsController } from './endpoints.js';

/** Every controller the server runs, in one list. */
export function allControllers(deps: ControllerDeps): Controller[] {
  return [deploymentController(deps), replicaSetController(deps), daemonSetController(deps), jobController(deps), garbageCollector(deps), eventExpiryController(deps), endpointsController(deps)];
}
