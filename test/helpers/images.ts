/**
 * Images for the image-transfer tests (issue 15): a test image with a layer of random bytes (incompressible,
 * so a transfer moves its whole size), saved to an archive as `drover image push --from-archive` takes it,
 * and the bytes a device link carried, read from the kernel's own counters.
 */
import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceLink } from './netns.js';
import type { PodmanSandbox } from './podman.js';

const podman = (sb: Pick<PodmanSandbox, 'root' | 'runroot' | 'env'>, args: string[]) =>
  execa('podman', ['--root', sb.root, '--runroot', sb.runroot, ...args], { env: sb.env, stdin: 'ignore' });

/** busybox plus `megabytes` MiB of random bytes at /blob; the default command prints then sleeps. */
export async function buildBigImage(sb: PodmanSandbox, tag: string, megabytes: number): Promise<string> {
  const ctx = await mkdtemp(join(sb.dir, 'big-'));
  try {
    await copyFile('/bin/busybox', join(ctx, 'busybox'));
    const chunk = 1024 * 1024;
    const parts: Buffer[] = [];
    for (let i = 0; i < megabytes; i++) parts.push(randomBytes(chunk));
    await writeFile(join(ctx, 'blob'), Buffer.concat(parts));
    await writeFile(
      join(ctx, 'Containerfile'),
      'FROM scratch\nADD busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nADD blob /blob\n' +
        `CMD ["sh","-c","echo big-image-${tag.split(':').pop()}; trap 'exit 0' TERM; while true; do sleep 1; done"]\n`,
    );
    await podman(sb, ['build', '--quiet', '--network', 'none', '-t', tag, ctx]);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
  return tag;
}

/** `podman save` of `tag` (docker-archive) into `file`; its size and sha256 digest. */
export async function saveArchive(sb: PodmanSandbox, tag: string, file: string): Promise<{ file: string; size: number; digest: string }> {
  await podman(sb, ['save', '--format', 'docker-archive', '-o', file, tag]);
  const hash = createHash('sha256');
  for await (const b of createReadStream(file)) hash.update(b as Buffer);
  return { file, size: (await stat(file)).size, digest: `sha256:${hash.digest('hex')}` };
}

/** Bytes the host has sent down a device link so far (the veth's own counter: TLS, TCP/IP headers, retransmits). */
export async function bytesToDevice(link: DeviceLink): Promise<number> {
  return Number((await readFile(`/sys/class/net/${link.hostIf}/statistics/tx_bytes`, 'utf8')).trim());
}
