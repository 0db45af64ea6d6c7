/**
 * `drover top pods` figures from real podman: the agent's usage sampler over `podman stats`. A pod that
 * holds 32 MiB must show about that much, from its first sample on (a fresh pod is not 0Mi).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { UsageSampler } from '../../agent/usage.js';
import { silentLogger } from '../../src/util/logger.js';
import { drover, ok, rows } from '../helpers/cli.js';
import { startTestServer, waitFor } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const MiB = 1024 * 1024;
/** Holds 32 MiB in a shell variable (busybox sh keeps it in its heap; the loop, or sh would exec its last command and drop it). */
const HOG = 'x=$(head -c 33554432 /dev/zero | tr "\\000" a); echo ready; while true; do sleep 1; done';
const labels = (pod: string, container: string) => ({ [LABELS.managed]: 'true', [LABELS.namespace]: 'default', [LABELS.pod]: pod, [LABELS.container]: container, [LABELS.podUid]: `uid-${pod}` });

describe('usage sampler on real podman', () => {
  let sb: PodmanSandbox;
  let image: string;
  before(async () => {
    sb = await podmanSandbox();
    image = await buildTestImage(sb);
  });
  after(async () => {
    await sb?.cleanup();
  });

  it('reports each pod\'s memory in bytes from the first sample', async () => {
    await sb.runtime.run({ name: 'hog-main', image, command: ['sh', '-c', HOG], env: {}, ports: [], labels: labels('hog', 'main') });
    await sb.runtime.run({ name: 'idle-main', image, command: ['sleep', '3600'], env: {}, ports: [], labels: labels('idle', 'main') });
    const deadline = Date.now() + 60_000;
    while (!(await sb.runtime.logs((await sb.runtime.list({ [LABELS.pod]: 'hog' }))[0]!.id, {})).includes('ready')) {
      assert.ok(Date.now() < deadline, 'the hog container never got ready');
      await new Promise((r) => setTimeout(r, 200));
    }
    const sampler = new UsageSampler(sb.runtime, { cores: 2, cpuPercent: async () => 0, memoryBytes: async () => 0 }, silentLogger);
    const containers = await sb.runtime.list({ [LABELS.managed]: 'true' });
    const first = await sampler.sample(containers);
    const hogMem = first.pods.get('default/hog')?.memoryBytes ?? 0;
    const idleMem = first.pods.get('default/idle')?.memoryBytes ?? 0;
    console.log(`measured: hog ${(hogMem / MiB).toFixed(1)} MiB, idle ${(idleMem / MiB).toFixed(2)} MiB`);
    assert.ok(hogMem >= 32 * MiB && hogMem < 256 * MiB, `hog pod: ${hogMem} bytes`);
    assert.ok(idleMem > 0, `idle pod: ${idleMem} bytes (a running container uses some memory)`);
    const second = await sampler.sample(containers);
    assert.ok((second.pods.get('default/hog')?.memoryBytes ?? 0) >= 32 * MiB);
    for (const c of containers) await sb.runtime.remove(c.id);
  });

  it('drover top pods shows the memory a fresh pod uses, through agent, MQTT, server and metrics API', async () => {
    const t = await startTestServer();
    try {
      await t.addAgent({ node: 'local', runtime: sb.runtime, heartbeatSeconds: 2 });
      const env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
      const manifest = `apiVersion: v1
kind: Pod
metadata: { name: hog }
spec:
  containers:
  - name: main
    image: ${image}
    command: ["sh", "-c", ${JSON.stringify(HOG)}]
`;
      ok(await drover(env, ['apply', '-f', '-'], `${manifest}---\n${manifest.replace('name: hog', 'name: idle').replace(/command: .*/, 'command: ["sleep", "3600"]')}`));
      const started = Date.now();
      const line = await waitFor('top pods to show the hog with its memory', async () => {
        const r = await drover(env, ['top', 'pods']);
        const row = r.code === 0 ? rows(r.stdout).find((c) => c[0] === 'hog') : undefined;
        return row && Number(row[2]!.replace(/Mi$/, '')) >= 32 ? row : undefined;
      }, 90_000, 1000);
      console.log(`top pods: ${line.join('  ')} (${((Date.now() - started) / 1000).toFixed(1)} s after apply)`);
      assert.match(line[1]!, /^\d+m$/);
      const idle = await waitFor('top pods to show the idle pod', async () => {
        const r = await drover(env, ['top', 'pods', 'idle']);
        return r.code === 0 ? rows(r.stdout)[1] : undefined;
      }, 60_000, 1000);
      console.log(`top pods: ${idle.join('  ')}`);
      assert.match(idle[2]!, /^[1-9]\d*(Ki|Mi)$/, 'an idle pod shows what it uses, not 0Mi');
    } finally {
      await t.stop();
    }
  });
});
