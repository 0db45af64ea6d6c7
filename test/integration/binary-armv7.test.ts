/**
 * The armv7 single binary starts under qemu-arm-static with no Node on PATH (apart from the arm64 agent
 * test: each file has the runner's 240 s to itself, and emulated V8 is slow on a busy machine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binaryPath, deviceEnv, runDevice } from '../helpers/binary.js';

test('the armv7 binary starts under qemu-arm-static', async (t) => {
  const bin = await binaryPath('arm');
  const dir = await mkdtemp(join(tmpdir(), 'drover-armv7-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const r = await runDevice('arm', bin, ['version', '--client', '-o', 'json'], { cwd: dir, env: deviceEnv(dir) });
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout) as { clientVersion: { platform: string; drover: { node: string } } };
  assert.equal(v.clientVersion.platform, 'linux/arm');
  assert.match(v.clientVersion.drover.node, /^v20\./);
});
