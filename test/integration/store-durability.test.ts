import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LevelStore } from '../../server/store/level.js';

const WRITER = fileURLToPath(new URL('../helpers/store-writer.ts', import.meta.url));
const ACKS_BEFORE_KILL = 200;

for (const inFlight of [1, 16]) test(`every acknowledged write survives kill -9 of the writer (${inFlight} in flight)`, { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-durability-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');

  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, path, String(inFlight)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));

  const acked: string[] = [];
  let started = 0;
  let elapsedMs = 0;
  await new Promise<void>((resolve, reject) => {
    let partial = '';
    child.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') started = performance.now();
        else if (line) acked.push(line);
      }
      if (acked.length >= ACKS_BEFORE_KILL && child.exitCode === null && !child.killed) {
        elapsedMs = performance.now() - started;
        // No shutdown path at all: whatever was acknowledged must already be on disk.
        child.kill('SIGKILL');
        resolve();
      }
    });
    void exited.then(() => reject(new Error(`writer exited early after ${acked.length} acks: ${stderr}`)));
  });
  assert.equal(await exited, 'SIGKILL');
  const rate = Math.round((acked.length / elapsedMs) * 1000);
  t.diagnostic(`durability (${inFlight} in flight): ${acked.length} synced creates acknowledged in ${elapsedMs.toFixed(0)} ms (~${rate} creates/s) before SIGKILL`);

  const store = await LevelStore.open({ path });
  t.after(() => store.close());
  for (const name of acked) {
    assert.ok(await store.get('Pod', 'default', name), `acknowledged pod ${name} is missing after kill -9`);
  }
  assert.ok(store.revision() >= acked.length, `revision ${store.revision()} < ${acked.length} acks`);
  const { items, revision } = await store.list('Pod');
  assert.equal(revision, store.revision());
  assert.equal(items.length, revision, 'one pod per revision: no half-applied batch');

  const next = await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'after-crash', namespace: 'default' }, spec: {} });
  assert.equal(next.metadata.resourceVersion, String(revision + 1));
});
