/**
 * subPath sources resolved on the host (agent/engine/subpath.ts) with a real file system: a link out of the
 * volume is refused, a missing subPath is made a directory inside the volume (never handed to the runtime
 * unresolved, where a link created meanwhile would be followed).
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { confineSubPaths } from '../../agent/engine/subpath.js';
import type { RunSpec } from '../../agent/runtime/types.js';

describe('subPath confinement', () => {
  let root: string;
  let vol: string;
  let host: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'drover-subpath-'));
    vol = join(root, 'vol');
    host = join(root, 'host-only');
    await mkdir(vol);
    await mkdir(host);
    await writeFile(join(host, 'marker'), 'host');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const spec = (subPath: string): RunSpec => ({ mounts: [{ source: join(vol, subPath), target: '/data', readOnly: false, beneath: vol }] }) as unknown as RunSpec;

  it('refuses a subPath that is a link out of the volume, naming where it leads', async () => {
    await symlink(host, join(vol, 'evil'));
    await assert.rejects(confineSubPaths(spec('evil')), (err: Error) => err.message.includes(`resolves outside its volume (a symbolic link to ${host})`));
  });

  it('refuses a missing subPath under a link out of the volume, and creates nothing there', async () => {
    await symlink(host, join(vol, 'evil2'));
    await assert.rejects(confineSubPaths(spec('evil2/new/dir')), /resolves outside its volume/);
    await assert.rejects(lstat(join(host, 'new')), { code: 'ENOENT' });
  });

  it('makes a missing subPath a real directory inside the volume and mounts its resolved path', async () => {
    const out = await confineSubPaths(spec('later/a'));
    const source = out.mounts![0]!.source;
    assert.equal(source, join(vol, 'later', 'a'));
    assert.ok((await lstat(source)).isDirectory());
    // A link made now at the same name cannot replace the directory the runtime will mount.
    await assert.rejects(symlink(host, join(vol, 'later', 'a')), { code: 'EEXIST' });
    assert.ok(!(await lstat(join(vol, 'later'))).isSymbolicLink());
    await assert.rejects(readlink(source), { code: 'EINVAL' });
  });

  it('resolves a link that stays inside the volume to its target', async () => {
    await mkdir(join(vol, 'real'));
    await symlink('real', join(vol, 'alias'));
    const out = await confineSubPaths(spec('alias'));
    assert.equal(out.mounts![0]!.source, join(vol, 'real'));
  });
});
