/**
 * Secret volumes on a tmpfs (needs root, as the agent does to mount): the files a container reads
 * are there, and nothing of them is on the state dir's disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configLookup } from '../../agent/engine/env.js';
import { volumeDir } from '../../agent/engine/volume-layout.js';
import { VolumeManager } from '../../agent/volume-manager.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { grepDir } from '../helpers/disk-grep.js';

const VALUE = 'tmpfs-canary-2f9c';

async function fsTypeOf(dir: string): Promise<string | undefined> {
  const line = (await readFile('/proc/self/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === dir);
  return line?.split(' ')[2];
}

test('a secret volume is a tmpfs: the container sees its files, the disk never has them, and pod cleanup unmounts it', { skip: process.getuid?.() !== 0 ? 'needs root to mount' : false }, async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), 'drover-secret-vol-'));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const pod: DesiredPod = {
    uid: 'uid-secret-vol',
    namespace: 'default',
    name: 'web',
    spec: {
      containers: [{ name: 'c', image: 'localhost/app:1', volumeMounts: [{ name: 'creds', mountPath: '/creds' }] }],
      volumes: [
        { name: 'creds', secret: { secretName: 'db' } },
        { name: 'conf', configMap: { name: 'app' } },
      ],
    } as never,
  };
  const config = configLookup({
    configMaps: [{ namespace: 'default', name: 'app', data: { k: 'v' } }],
    secrets: [{ namespace: 'default', name: 'db', data: { password: Buffer.from(VALUE).toString('base64') } }],
  });
  const vm = new VolumeManager(stateDir, silentLogger);
  await vm.sync([pod], { config, stateDir });
  assert.equal(vm.error(pod.uid, 'creds'), undefined);
  const dir = volumeDir(stateDir, pod.uid, 'creds');
  t.after(async () => {
    // Only if the test failed half-way: leave no mount behind.
    if (await fsTypeOf(dir)) await vm.cleanup([], []);
  });
  assert.equal(await fsTypeOf(dir), 'tmpfs');
  assert.equal(await fsTypeOf(volumeDir(stateDir, pod.uid, 'conf')), undefined, 'only secret volumes');
  assert.equal(await readFile(join(dir, 'password'), 'utf8'), VALUE);
  assert.equal((await stat(join(dir, 'password'))).mode & 0o777, 0o400);
  const scan = await grepDir(stateDir, [VALUE, Buffer.from(VALUE).toString('base64')]);
  assert.deepEqual(scan.hits, []);
  assert.deepEqual(scan.skipped, [dir]);
  // A second sync (agent restart: the mount is still there) neither mounts again nor loses the files.
  await new VolumeManager(stateDir, silentLogger).sync([pod], { config, stateDir });
  assert.equal((await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.split(' ')[1] === dir).length, 1);
  await vm.cleanup([], []);
  assert.equal(await fsTypeOf(dir), undefined);
  await assert.rejects(stat(join(stateDir, 'pods', pod.uid)), { code: 'ENOENT' });
});
