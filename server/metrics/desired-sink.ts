import type { DesiredSink } from '../desired/publisher.js';

/** The desired-state sink with each snapshot publish counted (ok once the broker took it, error if it threw). */
export function countedDesiredSink(sink: DesiredSink, metrics: { desiredPublished(result: 'ok' | 'error'): void }): DesiredSink {
  return {
    async publishDesired(d, encoded) {
      try {
        // The payload as the publisher encoded it for this node (compressed when its agent accepts it).
        await sink.publishDesired(d, encoded);
      } catch (err) {
        metrics.desiredPublished('error');
        throw err;
      }
      metrics.desiredPublished('ok');
    },
    clearRetained: (node) => sink.clearRetained(node),
  };
}
