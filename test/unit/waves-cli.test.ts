import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { daemonSet, type DaemonSet } from '../../src/api/workloads.js';
import { describeObject } from '../../src/cli/describe.js';
import { rolloutStatusOf, setRolloutPaused, wavedRolloutStatus } from '../../src/cli/rollout.js';
import type { ApiObject } from '../../src/api/meta.js';

const NOW = Date.parse('2026-01-01T00:00:00Z');

function ds(rollout: Record<string, unknown>, o: { generation?: number; observed?: number } = {}): DaemonSet {
  return daemonSet.parse({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'sensor', namespace: 'default', generation: o.generation ?? 2 },
    spec: {
      selector: { matchLabels: { app: 'sensor' } },
      template: { metadata: { labels: { app: 'sensor' } }, spec: { containers: [{ name: 'sensor', image: 'sensor:2' }] } },
      drover: { rollout: { waves: [{ selector: { matchLabels: { site: 'lab' } } }, { nodes: 1 }, { percent: 5 }, { percent: 25 }], offlineNodes: 'wait' } },
    },
    status: {
      observedGeneration: o.observed ?? 2,
      drover: {
        rollout: {
          phase: 'Progressing',
          wave: 2,
          waves: 5,
          targetRevision: 'newhash',
          stableRevision: 'oldhash',
          counts: { updated: 12, ready: 10, pending: 2, offline: 2, failed: 0, total: 200 },
          message: 'waiting: pods Ready for 30s',
          waitingUntil: new Date(NOW + 18_000).toISOString(),
          offlineNodes: ['edge-7', 'edge-9'],
          ...rollout,
        },
      },
    },
  });
}

describe('rollout status / describe of a waved rollout', () => {
  it('shows the wave, counts per state, offline nodes and why it waits', () => {
    assert.deepEqual(wavedRolloutStatus(ds({}), NOW), {
      message: 'Waiting for daemon set "sensor" rollout to finish: wave 3/5 (5%): 12 updated, 10 ready, 2 pending (offline: edge-7, edge-9), waiting: pods Ready for 30s (18s left)',
      done: false,
    });
    assert.match(wavedRolloutStatus(ds({ wave: 0, failed: 1 }), NOW)!.message, /wave 1\/5 \(site=lab\)/);
  });

  it('waits for a spec change to be observed first; done when Complete; an error when rolled back', () => {
    assert.equal(wavedRolloutStatus(ds({}, { generation: 3, observed: 2 }))!.message, 'Waiting for daemon set spec update to be observed...');
    const done = rolloutStatusOf(ds({ phase: 'Complete', counts: { updated: 200, ready: 199, pending: 1, offline: 1, failed: 0, total: 200 } }) as unknown as ApiObject);
    assert.equal(done.done, true);
    assert.match(done.message, /^daemon set "sensor" successfully rolled out \(ready on 199 of 200 nodes; offline ones start revision newhash when they are back\)$/);
    const back = rolloutStatusOf(ds({ phase: 'RolledBack', message: 'rolled back: wave 1/5 (site=lab) failed its gate: 1 of 3 pods failed' }) as unknown as ApiObject);
    assert.equal(back.done, false);
    assert.equal(back.error, 'daemon set "sensor" rolled back: wave 1/5 (site=lab) failed its gate: 1 of 3 pods failed');
    assert.match(wavedRolloutStatus(ds({ phase: 'Paused' }), NOW)!.message, /^Waiting for daemon set "sensor" rollout to be resumed: wave 3\/5/);
  });

  it('describe shows the rollout block', () => {
    const out = describeObject(ds({}) as unknown as ApiObject, undefined, NOW);
    assert.match(out, /Waved Rollout:/);
    assert.match(out, /Waves:\s+site=lab, 1 node, 5%, 25%, 100%/);
    assert.match(out, /Gate:\s+pods Ready for 30s, max failure ratio 0, timeout 600s/);
    assert.match(out, /Phase:\s+Progressing/);
    assert.match(out, /Wave:\s+3\/5 \(5%\)/);
    assert.match(out, /Nodes:\s+200 total, 12 updated, 10 ready, 2 pending, 2 offline, 0 failed/);
    assert.match(out, /Offline:\s+edge-7, edge-9/);
  });

  it('pause/resume: a DaemonSet holds its waved rollout with spec.drover.paused; one without waves cannot be paused', () => {
    const d = ds({});
    assert.equal(setRolloutPaused(d, true), true);
    assert.equal(d.spec.drover?.paused, true);
    assert.equal(setRolloutPaused(d, true), false);
    assert.equal(setRolloutPaused(d, false), true);
    assert.equal(d.spec.drover?.paused, undefined);
    delete d.spec.drover;
    assert.throws(() => setRolloutPaused(d, true), /daemonsets "sensor" has no spec\.drover\.rollout: only a waved rollout can be paused/);
  });
});
