/** The agent's usage sampler: CPU counters turned into rates per pod, memory summed over containers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { ContainerRuntime, ContainerStats, RuntimeContainer } from '../../agent/runtime/types.js';
import { UsageSampler } from '../../agent/usage.js';
import { silentLogger } from '../../src/util/logger.js';

const container = (id: string, pod: string): RuntimeContainer => ({ id, name: id, image: 'img', state: 'running', labels: { [LABELS.namespace]: 'default', [LABELS.pod]: pod } });

function runtimeWith(samples: ContainerStats[][]): ContainerRuntime {
  let i = 0;
  return { stats: async () => samples[Math.min(i++, samples.length - 1)]! } as unknown as ContainerRuntime;
}

const meter = { cores: 4, cpuPercent: async () => 25, memoryBytes: async () => 512 * 1024 * 1024 };
const S = 1e9;

describe('UsageSampler', () => {
  it('pod CPU is the rate between two samples, summed over the pod containers; memory is the latest', async () => {
    const cs = [container('aaaaaaaaaaaa1', 'web'), container('bbbbbbbbbbbb2', 'web'), container('cccccccccccc3', 'db')];
    const rt = runtimeWith([
      [
        { id: 'aaaaaaaaaaaa1', cpuNanos: 1 * S, memoryBytes: 100, sampledAtNanos: 10 * S },
        { id: 'bbbbbbbbbbbb2', cpuNanos: 0, memoryBytes: 50, sampledAtNanos: 10 * S },
        { id: 'cccccccccccc3', cpuNanos: 5 * S, memoryBytes: 1000, sampledAtNanos: 10 * S },
      ],
      [
        // 2 s of wall time: web used 1 s + 0.5 s of CPU (750m), db 0.2 s (100m).
        { id: 'aaaaaaaaaaaa1', cpuNanos: 2 * S, memoryBytes: 120, sampledAtNanos: 12 * S },
        { id: 'bbbbbbbbbbbb2', cpuNanos: 0.5 * S, memoryBytes: 60, sampledAtNanos: 12 * S },
        { id: 'cccccccccccc3', cpuNanos: 5.2 * S, memoryBytes: 900, sampledAtNanos: 12 * S },
      ],
    ]);
    const sampler = new UsageSampler(rt, meter, silentLogger);
    const first = await sampler.sample(cs);
    assert.deepEqual(first.pods.get('default/web'), { cpuMilli: 0, memoryBytes: 150 }, 'no rate from one sample');
    assert.deepEqual(first.node, { cpuMilli: 1000, memoryBytes: 512 * 1024 * 1024 }, '25% of 4 cores');
    const second = await sampler.sample(cs);
    assert.deepEqual(second.pods.get('default/web'), { cpuMilli: 750, memoryBytes: 180 });
    assert.deepEqual(second.pods.get('default/db'), { cpuMilli: 100, memoryBytes: 900 });
  });

  it('a restarted container (counter went down) reports no CPU for that window; unmanaged containers are ignored', async () => {
    const rt = runtimeWith([
      [{ id: 'aaaaaaaaaaaa1', cpuNanos: 9 * S, memoryBytes: 10, sampledAtNanos: 1 * S }],
      [
        { id: 'aaaaaaaaaaaa1', cpuNanos: 1 * S, memoryBytes: 10, sampledAtNanos: 2 * S },
        { id: 'ffffffffffff9', cpuNanos: 1 * S, memoryBytes: 10, sampledAtNanos: 2 * S },
      ],
    ]);
    const sampler = new UsageSampler(rt, meter, silentLogger);
    await sampler.sample([container('aaaaaaaaaaaa1', 'web')]);
    const s = await sampler.sample([container('aaaaaaaaaaaa1', 'web')]);
    assert.deepEqual([...s.pods.keys()], ['default/web']);
    assert.equal(s.pods.get('default/web')!.cpuMilli, 0);
  });

  it('a runtime that fails or cannot measure yields node figures only, never an error', async () => {
    const failing = { stats: async () => Promise.reject(new Error('podman died')) } as unknown as ContainerRuntime;
    const s = await new UsageSampler(failing, meter, silentLogger).sample([container('a', 'web')]);
    assert.equal(s.pods.size, 0);
    assert.ok(s.node);
    const none = await new UsageSampler({} as ContainerRuntime, { ...meter, cpuPercent: () => Promise.reject(new Error('no /proc')) }, silentLogger).sample([]);
    assert.equal(none.node, undefined);
  });
});
