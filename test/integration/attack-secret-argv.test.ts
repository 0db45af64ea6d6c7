/**
 * Another user on a device reads every process's argv (/proc/PID/cmdline is world-readable). The agent passes
 * container env through a private env file, except a value that file format cannot hold: one with a newline,
 * which is what a PEM key or certificate from a Secret (`env: valueFrom: secretKeyRef`) usually is. That value
 * went onto `podman create --env K=V` argv. Watched here as such a user would: scanning /proc while the real
 * podman adapter creates the container.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { RunSpec } from '../../agent/runtime/types.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const SECRET_LINE = `ARGVSECRET${Date.now()}`;
const PEM = `-----BEGIN PRIVATE KEY-----\n${SECRET_LINE}\n-----END PRIVATE KEY-----`;

/** Scans every process's argv until stopped; resolves with the pids whose argv held `needle`. */
function watchArgv(needle: string): { stop(): Promise<string[]> } {
  const hits = new Set<string>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const argv = await readFile(`/proc/${pid}/cmdline`).catch(() => undefined);
        if (argv?.includes(needle)) hits.add(pid);
      }
      await new Promise((r) => setImmediate(r));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return [...hits];
    },
  };
}

describe('attack: a multi-line Secret in a container env, read from another user\'s view of argv', { timeout: 300_000 }, () => {
  let sb: PodmanSandbox;
  let image: string;
  before(async () => {
    sb = await podmanSandbox();
    image = await buildTestImage(sb);
  });
  after(async () => {
    await sb?.cleanup();
  });

  test('a PEM value given as env reaches the container but never any process\'s argv', async () => {
    const watch = watchArgv(SECRET_LINE);
    const ids: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const spec: RunSpec = { name: `argv-${i}`, image, env: { TLS_KEY: PEM }, ports: [], labels: { 'drover.io/test': 'attack-secret-argv' }, command: ['sh', '-c', 'sleep 3600'] };
        ids.push(await sb.runtime.run(spec));
      }
    } finally {
      const hits = await watch.stop();
      assert.deepEqual(hits, [], `the Secret's line was in the world-readable argv of process(es) ${hits.join(', ')} (podman create --env)`);
    }
    const r = await sb.runtime.exec(ids[0]!, ['sh', '-c', 'printf %s "$TLS_KEY"'], 10_000);
    assert.equal(r.output, PEM, 'the container must still get the whole value');
  });
});
