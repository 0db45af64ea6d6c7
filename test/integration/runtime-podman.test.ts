import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { detectRuntime } from '../../agent/runtime/detect.js';
import { PodmanRuntime } from '../../agent/runtime/podman.js';
import { buildNoEntrypointImage, buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';
import { freeHostPort, rejectsRuntimeError, runtimeContract, waitFor, type ContainerFacts } from '../helpers/runtime-contract.js';

// The shared runtime contract against real podman (a private store), then what only podman is
// asked for here: a published port that answers (the stand-in nerdctl has no network namespace),
// podman's refusal of a missing working directory (runc under nerdctl makes it), detection with
// the store the agent was given.
let sb: PodmanSandbox;

runtimeContract(
  'PodmanRuntime against real podman',
  async () => {
    sb = await podmanSandbox();
    const image = await buildTestImage(sb);
    const noEntrypointImage = await buildNoEntrypointImage(sb);
    const cli = async (args: string[]) => (await execa('podman', ['--root', sb.root, '--runroot', sb.runroot, ...args], { env: sb.env })).stdout;
    return {
      runtime: sb.runtime,
      tool: 'podman',
      bin: 'podman',
      withBin: (bin) => new PodmanRuntime({ bin, root: sb.root, runroot: sb.runroot, env: sb.env }),
      cli,
      facts: async (id): Promise<ContainerFacts> => {
        const raw = JSON.parse(await cli(['container', 'inspect', id]))[0];
        return {
          env: raw.Config.Env,
          argv: [raw.Path, ...raw.Args],
          memoryBytes: raw.HostConfig.Memory,
          cpuMilli: raw.HostConfig.NanoCpus / 1_000_000,
          portBindings: raw.HostConfig.PortBindings ?? {},
          networkMode: raw.HostConfig.NetworkMode,
          devices: JSON.stringify(raw.HostConfig.Devices),
        };
      },
      image,
      noEntrypointImage,
      scratch: sb.dir,
      errors: {
        missingImage: /^podman run failed: localhost\/does-not-exist:1: image not known$/,
        nameClash: /^podman run failed: .*already in use/,
        missingContainer: /no container with name or ID "nope" found/,
      },
      cleanup: () => sb.cleanup(),
    };
  },
  (h) => {
    test('published port answers from the host', async () => {
      const rt = h().runtime;
      const hostPort = await freeHostPort();
      const id = await rt.run({
        name: `port-${process.pid}`,
        image: h().image,
        env: {},
        labels: {},
        command: ['sh', '-c', 'mkdir /www && echo port-ok > /www/index.html && exec httpd -f -p 8080 -h /www'],
        ports: [{ containerPort: 8080, hostPort, hostIP: '127.0.0.1', protocol: 'TCP' }],
      });
      const body = await waitFor('httpd through the published port', async () => {
        try {
          const res = await fetch(`http://127.0.0.1:${hostPort}/index.html`);
          return await res.text();
        } catch {
          return undefined;
        }
      });
      assert.equal(body, 'port-ok\n');
      await rt.remove(id);
    });

    test('a missing working directory fails the start and the container is removed again', async () => {
      const rt = h().runtime;
      const name = `wd-${process.pid}`;
      await rejectsRuntimeError(rt.run({ name, image: h().image, env: {}, ports: [], labels: {}, command: ['true'], workingDir: '/does/not/exist' }), /^podman run failed: .*workdir "\/does\/not\/exist" does not exist/);
      assert.equal(await rt.inspect(name), undefined);
    });

    test('detectRuntime (auto) takes podman with the store it is given', async () => {
      const found = await detectRuntime({ podman: { root: sb.root, runroot: sb.runroot, env: sb.env } });
      assert.equal(found.name, 'podman');
      assert.ok((await found.list({ 'drover.test/suite': '' })).length > 0, 'uses the given store');
    });
  },
);
