/**
 * Removing containers on real podman as the agent does it (agent/runtime/bounded.ts RemoveBatches
 * over PodmanRuntime.removeMany): the removes asked for together go as one `podman rm --force
 * --time N` call, which gives each running container its stop signal and grace period (no separate
 * `podman stop`), kills one that ignores the signal, and takes a container that is already gone in
 * its stride.
 */
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RemoveBatches } from '../../agent/runtime/bounded.js';
import { PodmanRuntime } from '../../agent/runtime/podman.js';
import { createLogger } from '../../src/util/logger.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

let sb: PodmanSandbox;
let image: string;
let dir: string;

/** Every podman command line the runtime ran (its debug log). */
const commands: string[][] = [];
const logger = createLogger({
  name: 'remove-podman-test',
  level: 'debug',
  destination: {
    write(line: string) {
      const o = JSON.parse(line) as { msg: string; args?: string[] };
      if (o.msg === 'podman call' && o.args) commands.push(o.args);
    },
  },
});

before(async () => {
  sb = await podmanSandbox();
  image = await buildTestImage(sb);
  dir = await mkdtemp(join(tmpdir(), 'drover-remove-'));
});
after(async () => {
  await sb?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('removing containers on podman', () => {
  test('removes asked for together: one rm call, the stop signal delivered to each running container, one that ignores it killed, a missing one no error', async () => {
    const runtime = new PodmanRuntime({ root: sb.root, runroot: sb.runroot, env: sb.env, logger });
    const run = (name: string, script: string) =>
      runtime.run({ name, image, command: ['sh', '-c', script], env: {}, ports: [], labels: { 'drover.io/test': 'remove' }, mounts: [{ source: dir, target: '/out', readOnly: false }] });
    // Writes down that it got TERM, then exits: what a graceful stop looks like from inside.
    const graceful = await Promise.all(['g1', 'g2'].map((n) => run(n, `trap 'echo term > /out/${n}; exit 0' TERM; echo up > /out/${n}-up; sleep 3600 & wait`)));
    // Ignores TERM: only the kill after the grace period ends it.
    const stubborn = await run('stubborn', "trap '' TERM; echo up > /out/stubborn-up; sleep 3600 & wait");
    // The traps are set once each script has written its "up" file.
    for (const n of ['g1', 'g2', 'stubborn']) {
      for (let i = 0; ; i++) {
        if (await readFile(join(dir, `${n}-up`), 'utf8').then(() => true, () => false)) break;
        if (i > 200) assert.fail(`${n} never started`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const missing = 'f'.repeat(64);
    commands.length = 0;
    const batches = new RemoveBatches(runtime, logger);
    await Promise.all([...graceful, stubborn, missing].map((id) => batches.remove(id, 2)));

    const rms = commands.filter((a) => a.includes('rm'));
    assert.equal(rms.length, 1, `one podman rm for all four: ${JSON.stringify(commands)}`);
    assert.ok(rms[0]!.includes('--time') && rms[0]![rms[0]!.indexOf('--time') + 1] === '2', 'with the grace period');
    assert.ok(!commands.some((a) => a.includes('stop')), 'no separate podman stop');
    assert.deepEqual(await runtime.list({ 'drover.io/test': 'remove' }), [], 'all removed');
    for (const n of ['g1', 'g2']) assert.equal((await readFile(join(dir, n), 'utf8')).trim(), 'term', `${n} got its stop signal before it was removed`);
  });

  test("an exit event names the container that exited by its full id (how the agent tells its own removals from crashes)", async () => {
    const runtime = new PodmanRuntime({ root: sb.root, runroot: sb.runroot, env: sb.env });
    const got: Array<string | undefined> = [];
    const unwatch = runtime.watchExits({ 'drover.io/test': 'exit' }, (id) => got.push(id));
    try {
      // The event stream is live once it has told of one exit: canaries until then.
      for (let i = 0; got.length === 0; i++) {
        if (i > 60) assert.fail('no exit event within 30 s');
        await runtime.run({ name: `canary-${i}`, image, command: ['true'], env: {}, ports: [], labels: { 'drover.io/test': 'exit' } });
        await new Promise((r) => setTimeout(r, 500));
      }
      const id = await runtime.run({ name: 'crasher', image, command: ['sh', '-c', "trap '' TERM; sleep 3600 & wait"], env: {}, ports: [], labels: { 'drover.io/test': 'exit' } });
      // Another label's exit is not told.
      const other = await runtime.run({ name: 'other', image, command: ['true'], env: {}, ports: [], labels: { 'drover.io/test': 'other' } });
      await execa('podman', ['--root', sb.root, '--runroot', sb.runroot, 'kill', id], { env: sb.env, stdin: 'ignore' });
      for (let i = 0; !got.includes(id); i++) {
        if (i > 100) assert.fail(`the exit of ${id} was not told: ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(!got.includes(other), 'a container without the label is not told');
      assert.ok(got.every((g) => g === undefined || /^[0-9a-f]{64}$/.test(g)), `full ids: ${JSON.stringify(got)}`);
    } finally {
      unwatch();
    }
  });

  test('one remove with grace 0 of a container that ignores TERM: removed (killed), not left running', async () => {
    const runtime = new PodmanRuntime({ root: sb.root, runroot: sb.runroot, env: sb.env });
    const id = await runtime.run({ name: 'lone', image, command: ['sh', '-c', "trap '' TERM; sleep 3600 & wait"], env: {}, ports: [], labels: { 'drover.io/test': 'lone' } });
    await runtime.remove(id);
    assert.equal(await runtime.inspect(id), undefined);
    await runtime.remove(id);
  });
});
