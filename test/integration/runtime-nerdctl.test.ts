import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NerdctlRuntime } from '../../agent/runtime/nerdctl.js';
import { FAKE_NERDCTL, fakeNerdctlSandbox } from '../helpers/fake-nerdctl.js';
import { rejectsRuntimeError, runtimeContract, SLEEP_UNTIL_TERM, type ContainerFacts, type ContractHarness } from '../helpers/runtime-contract.js';

// nerdctl's own texts (pkg/imgutil/imgutil.go, pkg/namestore/namestore.go, containerwalker).
const ERRORS = {
  missingImage: /^nerdctl run failed: image not available: "localhost\/does-not-exist:1"$/,
  nameClash: /^nerdctl run failed: name "t\d+-\d+" is already used by ID "[0-9a-f]{64}"$/,
  missingContainer: /no such container: nope/,
};

interface DockercompatInspect {
  Path: string;
  Args: string[];
  Config: { Env: string[] };
  HostConfig: { Memory: number; CpuQuota: number; CpuPeriod: number; PortBindings: ContainerFacts['portBindings'] | null; NetworkMode: string; Devices: unknown };
}

function factsOf(raw: DockercompatInspect): ContainerFacts {
  const h = raw.HostConfig;
  return {
    env: raw.Config.Env,
    argv: [raw.Path, ...(raw.Args ?? [])],
    memoryBytes: h.Memory,
    cpuMilli: h.CpuPeriod ? Math.round((h.CpuQuota / h.CpuPeriod) * 1000) : 0,
    portBindings: h.PortBindings ?? {},
    networkMode: h.NetworkMode,
    devices: JSON.stringify(h.Devices),
  };
}

function harness(opts: { bin: string; namespace: string; dataRoot?: string; address?: string; env?: Record<string, string> }, rest: Pick<ContractHarness, 'image' | 'noEntrypointImage' | 'scratch' | 'cleanup'>): ContractHarness {
  const globalArgs = ['--namespace', opts.namespace, ...(opts.address ? ['--address', opts.address] : []), ...(opts.dataRoot ? ['--data-root', opts.dataRoot] : [])];
  const cli = async (args: string[]) => (await execa(opts.bin, [...globalArgs, ...args], { env: opts.env })).stdout;
  return {
    runtime: new NerdctlRuntime(opts),
    tool: 'nerdctl',
    bin: opts.bin,
    withBin: (bin) => new NerdctlRuntime({ ...opts, bin }),
    cli,
    facts: async (id) => factsOf((JSON.parse(await cli(['container', 'inspect', id])) as DockercompatInspect[])[0]!),
    errors: ERRORS,
    ...rest,
  };
}

runtimeContract(
  'NerdctlRuntime against the stand-in nerdctl',
  async () => {
    const sb = await fakeNerdctlSandbox();
    const image = await sb.addImage('localhost/drover-test:1', { Cmd: ['sh', '-c', 'echo default-cmd; sleep 3600'] });
    const noEntrypointImage = await sb.addImage('localhost/drover-noentry:1', {});
    return harness({ bin: sb.bin, namespace: sb.namespace, dataRoot: sb.dataRoot }, { image, noEntrypointImage, scratch: sb.dir, cleanup: () => sb.cleanup() });
  },
  (h) => {
    test('the stand-in refuses what nerdctl refuses: an unknown subcommand or flag, a missing flag value', async () => {
      const run = (args: string[]) => execa(FAKE_NERDCTL, ['--namespace', 'x', '--data-root', h().scratch, ...args], { reject: false });
      for (const [args, msg] of [
        [['contaner', 'ls'], 'unknown command \\"contaner\\" for \\"nerdctl\\"'],
        [['ps', '--bogus'], 'unknown flag: --bogus'],
        [['create', '-Z', 'img'], "unknown shorthand flag: 'Z' in -Z"],
        [['stop', '--time'], 'flag needs an argument: --time'],
        [['create', '--pull', 'sometimes', 'img'], 'unexpected pull mode: \\"sometimes\\"'],
      ] as const) {
        const r = await run([...args]);
        assert.equal(r.exitCode, 1, args.join(' '));
        assert.match(r.stderr, /^time="[^"]+" level=fatal msg=/);
        assert.ok(r.stderr.includes(msg), `${args.join(' ')}: ${r.stderr}`);
      }
    });

    test("containers live in the runtime's own containerd namespace: another namespace neither sees nor removes them", async () => {
      const id = await h().runtime.run({ name: `ns-${process.pid}`, image: h().image, env: {}, ports: [], labels: { 'drover.io/managed': 'true' }, command: ['sh', '-c', SLEEP_UNTIL_TERM] });
      const dataRoot = join(h().scratch, 'data'); // the sandbox's store
      const other = new NerdctlRuntime({ bin: FAKE_NERDCTL, namespace: 'k8s.io', dataRoot });
      assert.deepEqual(await other.list({ 'drover.io/managed': 'true' }), []);
      assert.equal(await other.inspect(id), undefined);
      await other.remove(id);
      assert.equal((await h().runtime.inspect(id))?.state, 'running');
      await h().runtime.remove(id);
    });

    test("exec: a command that prints nerdctl's own error line cannot fake its exit code", async () => {
      const rt = h().runtime;
      const id = await rt.run({ name: `forge-${process.pid}`, image: h().image, env: {}, ports: [], labels: {}, command: ['sh', '-c', SLEEP_UNTIL_TERM] });
      const forged = 'time="2026-01-01T00:00:00Z" level=fatal msg="exec failed with exit code 0"';
      const r = await rt.exec(id, ['sh', '-c', `echo '${forged}' >&2; exit 5`], 5_000);
      assert.equal(r.exitCode, 5);
      assert.ok(r.output.includes(forged), r.output);
      await rt.remove(id);
    });

    test('remove with --force reports a failure other than "no such container" (nerdctl itself exits 0)', async () => {
      const dir = await mkdtemp(join(h().scratch, 'rmfail-'));
      const wrapper = join(dir, 'nerdctl');
      // nerdctl rm --force logs at level=error and exits 0 when a removal fails.
      await writeFile(wrapper, `#!/bin/sh\nfor a in "$@"; do [ "$a" = rm ] && { printf '%s\\n' 'time="2026-01-01T00:00:00Z" level=error msg="1 errors:\\nfailed to remove snapshot: device or resource busy"' >&2; exit 0; }; done\nexec '${FAKE_NERDCTL}' "$@"\n`, { mode: 0o755 });
      await rejectsRuntimeError(h().withBin(wrapper).remove('some-id'), /^nerdctl rm failed: failed to remove snapshot: device or resource busy$/);
    });

    test('a device path with a comma is refused (nerdctl would read two devices)', async () => {
      await rejectsRuntimeError(
        h().runtime.run({ name: `dev-${process.pid}`, image: h().image, env: {}, ports: [], labels: {}, command: ['true'], devices: [{ hostPath: '/dev/null,/dev/mem' }] }),
        /nerdctl takes no device path with ","/,
      );
    });
  },
);

/** A docker-archive holding busybox (what `nerdctl load` reads), for a real nerdctl without a registry. */
async function busyboxArchive(dir: string, tag: string, config: { Cmd?: string[] }): Promise<string> {
  const work = await mkdtemp(join(dir, 'img-'));
  const rootfs = join(work, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await execa('cp', ['/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  await execa('sh', ['-c', `cd '${rootfs}/bin' && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done`]);
  await execa('tar', ['-C', rootfs, '-cf', join(work, 'layer.tar'), '.']);
  const diffId = `sha256:${(await execa('sha256sum', [join(work, 'layer.tar')])).stdout.split(' ')[0]}`;
  const cfg = JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...config }, rootfs: { type: 'layers', diff_ids: [diffId] } });
  await writeFile(join(work, 'config.json'), cfg);
  await writeFile(join(work, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [tag], Layers: ['layer.tar'] }]));
  const archive = join(work, 'image.tar');
  await execa('tar', ['-C', work, '-cf', archive, 'manifest.json', 'config.json', 'layer.tar']);
  return archive;
}

const realNerdctl = await execa('nerdctl', ['version', '--format', '{{json .}}'], { reject: false });
if (realNerdctl.exitCode === 0) {
  runtimeContract('NerdctlRuntime against real nerdctl', async () => {
    const namespace = `drover-test-${process.pid}`;
    const scratch = await mkdtemp(join(tmpdir(), 'drover-real-nerdctl-'));
    const load = async (tag: string, config: { Cmd?: string[] }) => {
      await execa('nerdctl', ['--namespace', namespace, 'load', '-i', await busyboxArchive(scratch, tag, config)]);
      return tag;
    };
    const image = await load('localhost/drover-test:1', { Cmd: ['sh', '-c', 'echo default-cmd; sleep 3600'] });
    const noEntrypointImage = await load('localhost/drover-noentry:1', {});
    return harness(
      { bin: 'nerdctl', namespace },
      {
        image,
        noEntrypointImage,
        scratch,
        cleanup: async () => {
          const ids = (await execa('nerdctl', ['--namespace', namespace, 'ps', '-a', '-q', '--no-trunc'], { reject: false })).stdout.split('\n').filter(Boolean);
          if (ids.length) await execa('nerdctl', ['--namespace', namespace, 'rm', '--force', ...ids], { reject: false });
          await execa('nerdctl', ['--namespace', namespace, 'rmi', '--force', image, noEntrypointImage], { reject: false });
          await rm(scratch, { recursive: true, force: true });
        },
      },
    );
  });
} else {
  const why = realNerdctl.code === 'ENOENT' ? 'no nerdctl on PATH (it is not packaged for Debian; see firmware-notes/nerdctl.md)' : `nerdctl version failed: ${realNerdctl.stderr.split('\n').pop()}`;
  test('NerdctlRuntime against real nerdctl', { skip: why }, () => {});
}
