/**
 * install.sh --images DIR (airgap, issue 15) run for real (dash) in a throwaway root, offline: every
 * *.tar of DIR is handed to the installed binary's `drover image load` (a stand-in that records its
 * arguments) after the binary is in place and before the service starts, in name order, with the
 * agent's state dir and runtime; other files are left alone; a load that fails fails the install and
 * takes back what it wrote; a missing directory fails before anything is written.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { errorLines, filesOf, makeFakeRoot, recorder, type FakeRoot } from '../helpers/fakeroot.js';

const TOKEN = `K10${'a'.repeat(64)}::abcdef.0123456789abcdef`;

/** A drover stand-in: --version answers; everything else is recorded; `image load` of a file named bad*.tar fails. */
const STAND_IN = `#!/bin/sh
if [ "$1" = --version ]; then echo 0.9.0-standin; exit 0; fi
printf '%s\\n' "drover $*" >> "$FAKEROOT_CALLS"
case $3 in */bad*.tar) echo 'Error: payload does not match any of the supported image formats: docker-archive: unexpected EOF' >&2; exit 1 ;; esac
exit 0
`;

async function setup(): Promise<{ fr: FakeRoot; bin: string; images: string }> {
  const fr = await makeFakeRoot();
  await fr.tool('systemctl', recorder('systemctl', '[ "$1" = is-active ] && exit 3\nexit 0'));
  await fr.tool('podman', recorder('podman'));
  const dist = join(fr.tmp, '..', 'dist');
  await mkdir(dist);
  const bin = join(dist, 'drover-linux-amd64');
  await writeFile(bin, STAND_IN, { mode: 0o755 });
  const images = join(fr.tmp, '..', 'images dir');
  await mkdir(images);
  return { fr, bin, images };
}

test('--images DIR: each *.tar loaded with drover image load (state dir, runtime) after the binary is installed and before the service is enabled', async () => {
  const { fr, bin, images } = await setup();
  try {
    await writeFile(join(images, 'b-app.tar'), 'b');
    await writeFile(join(images, 'a tool.tar'), 'a');
    await writeFile(join(images, 'README.txt'), 'not an archive');
    await mkdir(join(images, 'sub.tar'));
    const r = await fr.run(['agent', '--server', 'https://10.0.0.1:6443', '--runtime', 'podman', '--images', images, '--no-start'], { DROVER_TOKEN: TOKEN, INSTALL_DROVER_BINARY: bin });
    assert.equal(r.code, 0, r.stderr);
    const state = join(fr.root, 'var/lib/drover/agent');
    assert.deepEqual(await fr.calls(), [
      `drover image load ${images}/a tool.tar --state-dir ${state} --runtime podman`,
      `drover image load ${images}/b-app.tar --state-dir ${state} --runtime podman`,
      'systemctl daemon-reload',
      'systemctl enable drover-agent.service',
    ]);
    assert.match(r.stdout, /Loading image archive .*a tool\.tar/);
    assert.ok(filesOf(await fr.tree()).includes('/usr/local/bin/drover'));
  } finally {
    await fr.cleanup();
  }
});

test('--images: a load that fails fails the install (one [ERROR] line naming the archive) and takes back what it wrote; a missing directory fails before anything is written; a server install refuses the flag', async () => {
  const { fr, bin, images } = await setup();
  try {
    await writeFile(join(images, 'bad.tar'), 'truncated');
    const r = await fr.run(['agent', '--server', 'https://10.0.0.1:6443', '--images', images, '--no-start'], { DROVER_TOKEN: TOKEN, INSTALL_DROVER_BINARY: bin });
    assert.notEqual(r.code, 0);
    assert.deepEqual(errorLines(r), [`[ERROR]  drover image load ${images}/bad.tar failed (see above): the archive is damaged or the runtime refused it`]);
    assert.match(r.stderr, /unexpected EOF/);
    assert.deepEqual(filesOf(await fr.tree()), [], 'nothing left of the install');

    await fr.clearCalls();
    const missing = await fr.run(['agent', '--server', 'https://10.0.0.1:6443', '--images', join(images, 'nope'), '--no-start'], { DROVER_TOKEN: TOKEN, INSTALL_DROVER_BINARY: bin });
    assert.deepEqual(errorLines(missing), [`[ERROR]  --images ${join(images, 'nope')}: no such directory`]);
    assert.deepEqual(await fr.calls(), []);
    assert.deepEqual(filesOf(await fr.tree()), []);

    const server = await fr.run(['server', '--images', images, '--no-start'], { INSTALL_DROVER_BINARY: bin });
    assert.deepEqual(errorLines(server), ['[ERROR]  --images is an agent flag (the images a device runs)']);
  } finally {
    await fr.cleanup();
  }
});
