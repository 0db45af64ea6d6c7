import { execa } from 'execa';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NerdctlRuntime } from '../../agent/runtime/nerdctl.js';

/** The stand-in nerdctl (test/fixtures/nerdctl/nerdctl): see its header for what it does and does not do. */
export const FAKE_NERDCTL = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'nerdctl', 'nerdctl');

const BUSYBOX = '/bin/busybox';

export interface ImageConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
}

export interface FakeNerdctlSandbox {
  dir: string;
  /** The stand-in's store (`--data-root`). */
  dataRoot: string;
  namespace: string;
  bin: string;
  runtime: NerdctlRuntime;
  /** Puts an image of static busybox (applets in /bin) into the stand-in's store, as `nerdctl load` would. */
  addImage(name: string, config: ImageConfig): Promise<string>;
  cleanup(): Promise<void>;
}

/** A private store of the stand-in nerdctl, in a drover-like namespace of its own. */
export async function fakeNerdctlSandbox(namespace = 'drover-test'): Promise<FakeNerdctlSandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-nerdctl-'));
  const dataRoot = join(dir, 'data');
  const runtime = new NerdctlRuntime({ bin: FAKE_NERDCTL, namespace, dataRoot });
  let applets: string[] | undefined;
  return {
    dir,
    dataRoot,
    namespace,
    bin: FAKE_NERDCTL,
    runtime,
    async addImage(name, config) {
      const imageDir = join(dataRoot, 'ns', namespace, 'images', encodeURIComponent(name));
      const bin = join(imageDir, 'rootfs', 'bin');
      await mkdir(bin, { recursive: true });
      await mkdir(join(imageDir, 'rootfs', 'tmp'), { recursive: true });
      await copyFile(BUSYBOX, join(bin, 'busybox'));
      applets ??= (await execa(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox');
      await Promise.all(applets.map((a) => symlink('busybox', join(bin, a))));
      await writeFile(
        join(imageDir, 'config.json'),
        JSON.stringify({ Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/', ...config, CreatedAt: new Date().toISOString() }),
      );
      return name;
    },
    async cleanup() {
      // Best effort and never throws: the containers' processes are killed by rm --force.
      try {
        const { stdout } = await execa(FAKE_NERDCTL, ['--namespace', namespace, '--data-root', dataRoot, 'ps', '-a', '-q', '--no-trunc']);
        const ids = stdout.split('\n').filter(Boolean);
        if (ids.length) await execa(FAKE_NERDCTL, ['--namespace', namespace, '--data-root', dataRoot, 'rm', '--force', ...ids]);
      } catch (err) {
        console.warn(`fake nerdctl cleanup: ${String(err)}`);
      }
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) => console.warn(`fake nerdctl cleanup: could not remove ${dir}: ${String(err)}`));
    },
  };
}
