import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NerdctlRuntime } from '../../agent/runtime/nerdctl.js';

// The adapter reading nerdctl's output exactly as the fixtures have it (each names the nerdctl
// source it follows), with no stand-in logic in between: a script that prints the fixture for the
// subcommand it is given and fails on any other.
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'nerdctl');
const example = async (name: string) => JSON.parse(await readFile(join(FIXTURES, `${name}.json`), 'utf8')).example;

let dir: string;
let rt: NerdctlRuntime;

describe('NerdctlRuntime on the fixtures of nerdctl output', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-nerdctl-shapes-'));
    const inspect = await example('inspect');
    const ps = await example('ps');
    const exit = await example('events');
    const events = JSON.parse(await readFile(join(FIXTURES, 'events.json'), 'utf8'));
    // An exec's exit: same container, the exec's process id.
    const execExit = { ...exit, Event: JSON.stringify({ ...JSON.parse(exit.Event), id: 'exec-5f1e' }) };
    const otherNs = { ...exit, Namespace: 'k8s.io' };
    // nerdctl after 2.3.5 prints the labels: those that do not match are taken at their word.
    const mainOther = { ...events.example_main, Labels: { 'drover.io/managed': 'false' } };
    await writeFile(join(dir, 'inspect.out'), `${JSON.stringify([inspect], null, 4)}\n`);
    // nerdctl 1.7 (v1.7.7 pkg/inspecttypes/dockercompat/dockercompat.go): no StartedAt, FinishedAt the zero
    // time while running, Config without Image.
    const old = { ...inspect, Name: 'old', State: { ...inspect.State, Status: 'running', Running: true, ExitCode: 0, StartedAt: '', FinishedAt: '0001-01-01T00:00:00Z' }, Config: { Hostname: 'x', Labels: { 'drover.io/managed': 'true' } } };
    await writeFile(join(dir, 'inspect-old.out'), `${JSON.stringify([old], null, 4)}\n`);
    await writeFile(join(dir, 'ps.out'), `${JSON.stringify(ps)}\n`);
    await writeFile(join(dir, 'images.out'), `${JSON.stringify(await example('images'))}\n${JSON.stringify({ ...(await example('images')), Platform: 'linux/arm64' })}\n${JSON.stringify({ ...(await example('images')), Name: 'sha256:3b0a4c9d5f1e2a7b', Repository: '<none>', Tag: '<none>' })}\n`);
    await writeFile(join(dir, 'version.out'), `${JSON.stringify(await example('version'))}\n`);
    await writeFile(join(dir, 'events.out'), [execExit, otherNs, mainOther, exit].map((e) => `${JSON.stringify(e)}\n\n`).join(''));
    const script = join(dir, 'nerdctl');
    await writeFile(
      script,
      `#!/bin/sh
[ "$1 $2" = "--namespace drover" ] || { echo "time=\\"x\\" level=fatal msg=\\"unexpected globals: $*\\"" >&2; exit 1; }
shift 2
case "$*" in
  "version --format {{json .}}") cat '${dir}/version.out' ;;
  "ps --all --no-trunc --format {{json .}} --filter label=drover.io/managed=true") cat '${dir}/ps.out' ;;
  "container inspect old") cat '${dir}/inspect-old.out' ;;
  "container inspect "*) cat '${dir}/inspect.out' ;;
  "images --format {{json .}}") cat '${dir}/images.out' ;;
  "events --format {{json .}}") cat '${dir}/events.out'; exec sleep 30 ;;
  *) echo "time=\\"x\\" level=fatal msg=\\"unexpected: $*\\"" >&2; exit 1 ;;
esac
`,
      { mode: 0o755 },
    );
    rt = new NerdctlRuntime({ bin: script });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('version: nerdctl\'s and containerd\'s', async () => {
    assert.equal(await rt.version(), '2.3.5+containerd-1.6.20~ds1');
  });

  test('list: ids from ps, the rest from inspect; inspect: state, exit code, times, labels, IP', async () => {
    const [c] = await rt.list({ 'drover.io/managed': 'true' });
    assert.deepEqual(c, {
      id: '0e0b6a0c6f5a4c1ea3a0ad38a4b1f0a3d6d6b7a4b2a5c0c1d9e8f7a6b5c4d3e2',
      name: 'drover-default-web-web-1a2b3c4d',
      image: 'localhost/drover-test:1',
      labels: (await example('inspect')).Config.Labels,
      state: 'exited',
      exitCode: 3,
      createdAt: '2026-11-27T22:41:07.000Z',
      startedAt: '2026-11-27T22:41:07.000Z',
      finishedAt: '2026-11-27T22:41:09.000Z',
      // list() reads inspect, so it carries the exact times too (logs -p cuts at them).
      exact: { startedAt: '2026-11-27T22:41:07.400000000Z', finishedAt: '2026-11-27T22:41:09.500000000Z' },
      ip: '10.4.0.7',
    });
    assert.deepEqual(await rt.inspect('drover-default-web-web-1a2b3c4d'), c);
  });

  test('inspect of nerdctl 1.7\'s shape: running, no start time, not "finished" at year 1', async () => {
    const c = await rt.inspect('old');
    assert.equal(c?.state, 'running');
    assert.equal(c?.image, 'localhost/drover-test:1');
    assert.equal(c?.startedAt, undefined);
    assert.equal(c?.finishedAt, undefined);
    assert.equal(c?.exitCode, undefined);
  });

  test('images: one name per image, not one per platform; a CRI config-digest entry is no name', async () => {
    assert.deepEqual(await rt.images(), ['localhost/drover-test:1']);
  });

  test('watchExits: the container\'s own exit in its namespace counts (its labels looked up); an exec\'s exit, another namespace\'s and one labelled otherwise do not', async () => {
    let exits = 0;
    const stop = rt.watchExits({ 'drover.io/managed': 'true' }, () => exits++);
    try {
      const deadline = Date.now() + 10_000;
      while (exits === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // All lines were printed at once: give those that must not count time to be read.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(exits, 1);
    } finally {
      stop();
    }
  });
});
