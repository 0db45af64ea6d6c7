/**
 * The agent's state directory going wrong: a full disk (a tiny tmpfs, filled up) does not block a new
 * desired state and keeps the old cache intact; a corrupt cache, one of another node and a torn save
 * never stop an agent from starting, joining and running what the server sends.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { TargetState } from '../../agent/target.js';
import { readdir } from 'node:fs/promises';
import { startTestServer, waitFor } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import type { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';

const desired = (generation: number, pods: number): payloads.Desired => ({
  node: 'edge-full',
  generation,
  ts: new Date().toISOString(),
  configMaps: [],
  secrets: [],
  pods: Array.from({ length: pods }, (_, i) => ({
    uid: `uid-${generation}-${i}`,
    namespace: 'default',
    name: `p${i}`,
    spec: { containers: [{ name: 'main', image: 'localhost/app:1', command: ['sh', '-c', 'x'.repeat(200)] }], restartPolicy: 'Always' },
  })) as never,
});

describe('desired-state cache on a full disk (tmpfs)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-full-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  });
  after(async () => {
    await execa('umount', [dir]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  test('a snapshot that cannot be saved is applied anyway and reported; the old cache stays readable', async () => {
    const target = new TargetState(dir, silentLogger);
    assert.equal(await target.accept(desired(1, 1)), true);
    assert.equal(target.saveError, undefined);
    const before = await readFile(join(dir, 'desired.json'), 'utf8');

    // Fill the disk, then send a snapshot too big for what is left.
    await writeFile(join(dir, 'filler'), Buffer.alloc(60 * 1024)).catch(() => {});
    assert.equal(await target.accept(desired(2, 40)), true, 'applied although it could not be saved');
    assert.equal(target.desired?.generation, 2);
    assert.match(target.saveError ?? '', /ENOSPC|no space/i);
    assert.equal(await readFile(join(dir, 'desired.json'), 'utf8'), before, 'the previous cache is intact');

    // Room again: the next snapshot is saved and a restarted agent reads it.
    await rm(join(dir, 'filler'));
    assert.equal(await target.accept(desired(3, 2)), true);
    assert.equal(target.saveError, undefined);
    const reloaded = await new TargetState(dir, silentLogger).load('edge-full');
    assert.equal(reloaded.desired?.generation, 3);
    assert.equal(reloaded.corrupt, undefined);
  });
});

describe('a damaged state directory at agent start', () => {
  test('corrupt cache: moved aside, CorruptCache event, the agent joins and runs new pods', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'drover-state-'));
    const t = await startTestServer();
    try {
      await writeFile(join(stateDir, 'desired.json'), '{"format":1,"desired":{"node":"edge-dam');
      await writeFile(join(stateDir, 'desired.json.tmp-99999'), 'half a save');
      await t.addAgent({ node: 'edge-damaged', runtime: new FakeRuntime(), stateDir });
      await waitFor('node Ready', async () => (await t.api('GET', '/api/v1/nodes/edge-damaged')).body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'));
      const names = await readdir(stateDir);
      assert.ok(names.some((n) => n.startsWith('desired.json.corrupt-')), `moved aside: ${names.join(', ')}`);
      assert.ok(!names.includes('desired.json.tmp-99999'), 'the torn save is gone');
      const ev = await waitFor('CorruptCache event', async () => {
        const r = await t.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=edge-damaged');
        return r.body?.items?.find((e: any) => e.reason === 'CorruptCache');
      });
      assert.match(ev.message, /desired-state cache .* is corrupt .*moved to .*corrupt-/);
      const created = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'after-damage' }, spec: { containers: [{ name: 'main', image: 'busybox' }] } });
      assert.equal(created.status, 201, created.text);
      await waitFor('pod Running', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/after-damage')).body?.status?.phase === 'Running');
      // And the new cache is whole: a restarted agent would run it.
      const reloaded = await new TargetState(stateDir, silentLogger).load('edge-damaged');
      assert.equal(reloaded.corrupt, undefined);
      assert.equal(reloaded.desired?.pods.map((p) => p.name).join(), 'after-damage');
    } finally {
      await t.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  test("another node's cache is not run: moved aside and reported", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'drover-state-'));
    try {
      await new TargetState(stateDir, silentLogger).accept(desired(7, 1));
      const r = await new TargetState(stateDir, silentLogger).load('edge-other');
      assert.equal(r.desired, undefined);
      assert.match(r.corrupt ?? '', /it is the desired state of node edge-full, this agent is node edge-other/);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
