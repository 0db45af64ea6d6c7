import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectRuntime } from '../../agent/runtime/detect.js';
import { RuntimeError } from '../../src/util/errors.js';
import { FAKE_NERDCTL } from '../helpers/fake-nerdctl.js';

// Stand-in executables: a podman that answers `version` (or fails the way a broken podman does),
// and the stand-in nerdctl, whose containerd is "down" when FAKE_NERDCTL_CONTAINERD_DOWN=1.
let dir: string;
let goodPodman: string;
let brokenPodman: string;
const missing = '/nonexistent/bin/tool';

async function script(name: string, body: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

async function rejects(p: Promise<unknown>): Promise<RuntimeError> {
  const err = await p.then(
    () => assert.fail('expected a RuntimeError'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
  return err;
}

describe('detectRuntime', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-detect-'));
    goodPodman = await script('podman', `[ "$1" = version ] && echo '{"Client":{"Version":"4.3.1"}}' && exit 0\necho "Error: unexpected $*" >&2; exit 125`);
    brokenPodman = await script('podman-broken', `echo 'time="2026-01-01T00:00:00Z" level=warning msg="noise"' >&2\necho 'Error: cannot re-exec process to join the existing user namespace' >&2\nexit 125`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const nerdctlUp = { bin: FAKE_NERDCTL };
  const nerdctlDown = { bin: FAKE_NERDCTL, env: { FAKE_NERDCTL_CONTAINERD_DOWN: '1' } };

  test('auto takes podman when it answers, even with nerdctl there', async () => {
    const rt = await detectRuntime({ podman: { bin: goodPodman }, nerdctl: nerdctlUp });
    assert.equal(rt.name, 'podman');
    assert.equal(await rt.version(), '4.3.1');
  });

  test('auto falls back to nerdctl when podman is missing; it reports itself as nerdctl with containerd\'s version', async () => {
    const rt = await detectRuntime({ kind: 'auto', podman: { bin: missing }, nerdctl: nerdctlUp });
    assert.equal(rt.name, 'nerdctl');
    assert.equal(await rt.version(), '2.3.5+containerd-1.6.20~ds1', 'the fixture\'s versions (test/fixtures/nerdctl/version.json)');
  });

  test('auto falls back to nerdctl when podman is there but broken', async () => {
    const rt = await detectRuntime({ podman: { bin: brokenPodman }, nerdctl: nerdctlUp });
    assert.equal(rt.name, 'nerdctl');
  });

  test('auto with neither: one error naming both, why each failed, and how to install them', async () => {
    const err = await rejects(detectRuntime({ podman: { bin: missing }, nerdctl: nerdctlDown }));
    assert.match(err.message, /^no usable container runtime: /);
    assert.match(err.message, /tried podman \("\/nonexistent\/bin\/tool version"\): podman not found \(is it installed\?\)/);
    assert.match(err.message, /tried nerdctl \(".*nerdctl version"\): nerdctl version failed: cannot access containerd socket/);
    assert.match(err.message, /apt-get install podman/);
    assert.match(err.message, /containerd.*nerdctl.*firmware-notes\/nerdctl\.md/);
  });

  test('--runtime nerdctl does not fall back to a working podman; the error names nerdctl\'s failure', async () => {
    const err = await rejects(detectRuntime({ kind: 'nerdctl', podman: { bin: goodPodman }, nerdctl: nerdctlDown }));
    assert.match(err.message, /^container runtime nerdctl \(--runtime nerdctl\) is not usable: tried nerdctl .*cannot access containerd socket "\/run\/containerd\/containerd.sock"/);
    assert.doesNotMatch(err.message, /podman/);
  });

  test('--runtime nerdctl with a containerd socket that is not there names the socket', async () => {
    const err = await rejects(detectRuntime({ kind: 'nerdctl', nerdctl: { bin: FAKE_NERDCTL, address: join(dir, 'no.sock') } }));
    assert.match(err.message, new RegExp(`cannot access containerd socket "${join(dir, 'no.sock')}"`));
  });

  test('--runtime podman does not fall back to a working nerdctl; podman\'s own error line is the cause', async () => {
    const err = await rejects(detectRuntime({ kind: 'podman', podman: { bin: brokenPodman }, nerdctl: nerdctlUp }));
    assert.equal(err.message, `container runtime podman (--runtime podman) is not usable: tried podman ("${brokenPodman} version"): podman version failed: cannot re-exec process to join the existing user namespace`);
  });

  test('--runtime nerdctl answers as nerdctl', async () => {
    const rt = await detectRuntime({ kind: 'nerdctl', podman: { bin: goodPodman }, nerdctl: nerdctlUp });
    assert.equal(rt.name, 'nerdctl');
  });
});
