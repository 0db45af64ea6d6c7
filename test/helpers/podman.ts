import { execa } from 'execa';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PodmanRuntime } from '../../agent/runtime/podman.js';

/** The configuration podman needs on the test machines (runc + cgroupfs, explicit ulimits). */
// Each sandbox logs its podman events to a file of its own: the default file
// (/run/libpod/events/events.log) is shared by every sandbox of the suite and is cut to
// its newest part at 1 MB, so a test reading back its own events could find them gone.
const containersConf = (dir: string) => `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${join(dir, 'events.log')}"
events_logfile_max_size = 100000000
`;

const BUSYBOX = '/bin/busybox';

export interface PodmanSandbox {
  /** Temp directory holding everything below; removed by cleanup(). */
  dir: string;
  root: string;
  runroot: string;
  confPath: string;
  /** What podman calls need on top of process.env (CONTAINERS_CONF). */
  env: Record<string, string>;
  runtime: PodmanRuntime;
  cleanup(): Promise<void>;
}

/** A private podman store (own --root/--runroot), so tests neither see nor touch other containers. */
export async function podmanSandbox(): Promise<PodmanSandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-podman-'));
  const root = join(dir, 'root');
  const runroot = join(dir, 'runroot');
  const confPath = join(dir, 'containers.conf');
  await writeFile(confPath, containersConf(dir));
  const env = { CONTAINERS_CONF: confPath };
  const runtime = new PodmanRuntime({ root, runroot, env });
  return {
    dir,
    root,
    runroot,
    confPath,
    env,
    runtime,
    cleanup: () => cleanupSandbox(dir, root, runroot, env),
  };
}

function podmanIn(sandbox: Pick<PodmanSandbox, 'root' | 'runroot' | 'env'>, args: string[]) {
  return execa('podman', ['--root', sandbox.root, '--runroot', sandbox.runroot, ...args], {
    env: sandbox.env,
    stdin: 'ignore',
  });
}

async function buildImage(sandbox: PodmanSandbox, tag: string, containerfile: string): Promise<string> {
  const ctx = await mkdtemp(join(sandbox.dir, 'build-'));
  await copyFile(BUSYBOX, join(ctx, 'busybox'));
  await writeFile(join(ctx, 'Containerfile'), containerfile);
  try {
    await podmanIn(sandbox, ['build', '--quiet', '--network', 'none', '-t', tag, ctx]);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
  return tag;
}

/** A ~2 MB image of static busybox with its applets in /bin; the default CMD prints then sleeps. */
export function buildTestImage(sandbox: PodmanSandbox, tag = 'localhost/drover-test:1'): Promise<string> {
  return buildImage(
    sandbox,
    tag,
    'FROM scratch\nADD busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n' +
      'CMD ["sh","-c","echo default-cmd; sleep 3600"]\n',
  );
}

/** An image with neither ENTRYPOINT nor CMD: running it without a command must fail. */
export function buildNoEntrypointImage(sandbox: PodmanSandbox, tag = 'localhost/drover-noentry:1'): Promise<string> {
  return buildImage(sandbox, tag, 'FROM scratch\nADD busybox /bin/busybox\n');
}

/** Mount points at or below `dir`, deepest first; mountinfo escapes spaces and the like as octal. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/**
 * Best effort and never throws: a failed cleanup must not hide the test result. `system reset` is
 * deliberately not used: it also wipes podman's shared tmp dir (/run/libpod) and global networks,
 * which would break other sandboxes running at the same time. The overlay driver bind-mounts its
 * own directory (and container rootfs/shm mounts outlive a failed rm), hence the umounts.
 */
async function cleanupSandbox(dir: string, root: string, runroot: string, env: Record<string, string>): Promise<void> {
  await podmanIn({ root, runroot, env }, ['rm', '--all', '--force', '--time', '0']).catch((err: unknown) =>
    console.warn(`podman sandbox cleanup: rm -af failed: ${String(err)}`),
  );
  try {
    for (const mount of await mountsUnder(dir)) {
      await execa('umount', ['--lazy', mount], { reject: false, stdin: 'ignore' });
    }
  } catch (err) {
    console.warn(`podman sandbox cleanup: unmounting failed: ${String(err)}`);
  }
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    console.warn(`podman sandbox cleanup: could not remove ${dir}: ${String(err)}`);
  }
}
