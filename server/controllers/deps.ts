import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Store } from '../store/types.js';
import type { ImageCatalog } from '../desired/image-catalog.js';

/** What every controller is handed (built once in server/run.ts). */
export interface ControllerDeps {
  store: Store;
  events: EventRecorder;
  logger: Logger;
  /** Injected clock, so deadline logic is testable. */
  now: () => number;
  /** See ServerConfig.jobBackoffBaseMs. */
  jobBackoffBaseMs?: number;
  /** How often the garbage collector's full sweep runs (ms); default GC_SWEEP_MS in gc.ts. */
  gcSweepMs?: number;
  /** An Event not updated for this long is deleted (ms); default EVENT_TTL_MS (1 h, as Kubernetes' --event-ttl). */
  eventTtlMs?: number;
  /** Events kept per involved object, the newest; default EVENTS_PER_OBJECT (100). */
  eventsPerObject?: number;
  /** Most pods a ReplicaSet is given, whatever its spec says (an object stored before a lower cap); default MAX_REPLICAS. */
  maxReplicas?: number;
  /**
   * The images the server serves (issue 15): a rollout does not stop a pod until its node has loaded the
   * served images of the pod's replacement (image-gate.ts). Default NO_IMAGES: nothing is gated.
   */
  images?: ImageCatalog;
}
