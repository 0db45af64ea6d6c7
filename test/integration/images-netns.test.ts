/**
 * Images over a bad link (issue 15), end to end on real parts: a `drover server` process, an agent in a
 * network namespace with its own podman store (test/helpers/fault.ts), images pushed to the server with
 * `drover image push --from-archive` and fetched by the device in verified 1 MiB chunks.
 *   - the bandwidth budget holds on the wire: the node's label drover.io/image-bandwidth=2MiB (over the
 *     agent's own --image-bandwidth 8MiB/s) and the veth carries no more than 1.1 × 2 MiB/s;
 *   - a 50 MiB image: the link cut (down, then the carrier's NAT resets the connection) at ~30 %, the agent
 *     kill -9'd at ~60 %: the transfer resumes each time, the pod runs, and the server sends at most
 *     1.1 × the image's size in all (nothing fetched twice but the chunks in flight);
 *   - 30 % packet loss toward the device (15 % back): the transfer still completes and the pod runs;
 *   - a rollout to a served image keeps the old pod running until the device has loaded the new one;
 *   - airgap: an archive loaded on the device with no link is reported, and a pod on it fetches nothing.
 */
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { drover, ok } from '../helpers/cli.js';
import { waitFor } from '../helpers/cluster.js';
import { AGENT_START_MS, Cleanup, REPO, createDevice, DEPLOY, deploymentManifest, editDeployment, IMG1, podManifest, rolledOut, secs, serverProcess, sleep, waitReady, type Device, type ServerProcess } from '../helpers/fault.js';
import { LABELS } from '../../agent/engine/naming.js';
import { buildBigImage, bytesToDevice, saveArchive } from '../helpers/images.js';
import { podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const NODE = 'edge-img';
const BUDGET = 2 * 1024 * 1024;
const MiB = 1024 * 1024;

interface Transfer {
  digest: string;
  bytes: number;
  total: number;
  state: string;
  message?: string;
}

describe('images over a bad link: budget, cut link, agent kill -9, packet loss (netns, real podman)', { timeout: 600_000 }, () => {
  const cleanup = new Cleanup();
  let server: ServerProcess;
  let builder: PodmanSandbox;
  let dev: Device;
  let cliEnv: Record<string, string>;
  const archives = new Map<string, { file: string; size: number; digest: string }>();
  // The agent's own budget is 8 MiB/s; the operator's node label (2MiB) wins: the figures below are at 2 MiB/s.
  const agentArgs = ['--image-bandwidth', '8MiB/s'];

  const node = async () => (await server.api('GET', `/api/v1/nodes/${NODE}`)).body;
  const transferOf = async (digest: string): Promise<Transfer | undefined> => ((await node())?.status?.imageTransfers as Transfer[] | undefined)?.find((t) => t.digest === digest);
  const loaded = async (digest: string) => (((await node())?.status?.imageDigests as string[] | undefined) ?? []).includes(digest);
  const bytesServed = async () => {
    const r = await server.api('GET', '/metrics');
    const m = /^drover_image_bytes_served_total(?:\{[^}]*\})? (\S+)$/m.exec(String(r.text));
    return m ? Number(m[1]) : 0;
  };
  const podPhase = async (pod: string) => (await server.api('GET', `/api/v1/namespaces/default/pods/${pod}`)).body?.status?.phase;
  /** Builds, saves and pushes an image of `mb` MiB of random bytes; the archive's size and digest. */
  const pushBig = async (tag: string, mb: number) => {
    await buildBigImage(builder, tag, mb);
    const a = await saveArchive(builder, tag, join(builder.dir, `${tag.replace(/\W/g, '_')}.tar`));
    const r = ok(await drover(cliEnv, ['image', 'push', '--from-archive', a.file]), 'drover image push');
    assert.match(r.stdout + r.stderr, new RegExp(a.digest.slice(7, 19)), 'push prints the digest');
    archives.set(tag, a);
    return a;
  };

  before(async () => {
    server = await serverProcess(cleanup);
    await server.start();
    cliEnv = {
      DROVER_SERVER: `https://127.0.0.1:${server.apiPort}`,
      DROVER_TOKEN: (await readFile(join(server.dataDir, 'admin-token'), 'utf8')).trim(),
      DROVER_CA_FILE: join(server.dataDir, 'tls', 'ca.crt'),
    };
    builder = await podmanSandbox();
    cleanup.add('builder sandbox', () => builder.cleanup());
    dev = await createDevice(cleanup, NODE, () => server);
    dev.startAgent({ args: agentArgs });
    await waitReady(server.api, NODE, 'True', AGENT_START_MS);
    ok(await drover(cliEnv, ['label', 'node', NODE, 'drover.io/image-bandwidth=2MiB']), 'drover label node');
    await waitFor('the agent to take the label\'s budget', async () => /"bytesPerSecond":2097152,"from":"node label"/.test(dev.agent!.output()), 60_000, 200);
  });
  after(() => cleanup.run());

  test('the bandwidth budget holds on the wire: 16 MiB at 2 MiB/s, never more than 1.1 × the budget', async (t) => {
    const img = await pushBig('localhost/drover-bw:1', 16);
    const samples: Array<[number, number]> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push([performance.now(), await bytesToDevice(dev.link)]);
        await sleep(100);
      }
    })();
    assert.equal((await server.api('POST', '/api/v1/namespaces/default/pods', podManifest('bw', NODE, { image: 'localhost/drover-bw:1' }))).status, 201);
    await waitFor('pod bw Running', async () => (await podPhase('bw')) === 'Running', 120_000, 250);
    sampling = false;
    await sampler;
    assert.ok(await loaded(img.digest), 'the node reports the archive loaded');
    // The transfer is where the link carried most of its bytes: from the first 256 KiB past the start to 99 %.
    const base = samples[0]![1];
    const moved = samples.at(-1)![1] - base;
    assert.ok(moved >= img.size, `the link carried ${moved} B, the archive is ${img.size} B`);
    const from = samples.find(([, b]) => b - base >= 256 * 1024)!;
    const to = samples.find(([, b]) => b - base >= 0.99 * moved)!;
    const rate = (to[1] - from[1]) / ((to[0] - from[0]) / 1000);
    t.diagnostic(`16 MiB at a 2 MiB/s budget: ${(rate / MiB).toFixed(2)} MiB/s on the wire over ${secs(to[0] - from[0])} (${moved} B on the link in all)`);
    assert.ok(rate <= 1.1 * BUDGET, `${(rate / MiB).toFixed(2)} MiB/s on the wire, budget 2 MiB/s`);
  });

  test('a rollout to a served image the node lacks: the old pod runs on while the device fetches it (rollout status shows the bytes), then the new one replaces it', async (t) => {
    assert.equal((await server.api('POST', DEPLOY, deploymentManifest('roll', NODE, IMG1, 1))).status, 201);
    await waitFor('roll on the old image', () => rolledOut(server.api, dev, 'roll', IMG1, 1), 120_000, 250);
    const img = await pushBig('localhost/drover-roll:1', 12);
    await editDeployment(server.api, 'roll', (d) => (d.spec.template.spec.containers[0].image = 'localhost/drover-roll:1'));
    const status = drover(cliEnv, ['rollout', 'status', 'deployment/roll']);
    // While the image is on its way the old container keeps running (maxUnavailable 1 would stop it at once otherwise).
    let during = 0;
    await waitFor('the new image loaded', async () => {
      const tr = await transferOf(img.digest);
      if (tr && tr.bytes > 0 && tr.bytes < tr.total) {
        const old = (await dev.containers()).filter((c) => c.labels[LABELS.pod]?.startsWith('roll-') && c.image === IMG1 && c.state === 'running');
        assert.equal(old.length, 1, `the old pod stopped while the new image was at ${tr.bytes} of ${tr.total} B`);
        during++;
      }
      return loaded(img.digest);
    }, 120_000, 250);
    assert.ok(during > 0, 'the transfer was seen in progress');
    await waitFor('roll on the new image', () => rolledOut(server.api, dev, 'roll', 'localhost/drover-roll:1', 1), 120_000, 250);
    const out = ok(await status, 'drover rollout status');
    t.diagnostic(`rollout status:\n${out.stdout}`);
    assert.match(out.stdout, /fetching localhost\/drover-roll:1 [\d.]+\/[\d.]+ MB/, 'rollout status shows the fetch progress');
    assert.match(out.stdout, /successfully rolled out/);
  });

  test('a 50 MiB image: link cut at ~30 %, agent kill -9 at ~60 %: it resumes each time, the pod runs, the server sends ≤ 1.1 × the size', async (t) => {
    const servedBefore = await bytesServed();
    const img = await pushBig('localhost/drover-big:1', 50);
    assert.equal((await server.api('POST', '/api/v1/namespaces/default/pods', podManifest('big', NODE, { image: 'localhost/drover-big:1' }))).status, 201);

    const seen = await waitFor('the transfer past 25 %', async () => {
      const tr = await transferOf(img.digest);
      return tr && tr.bytes >= 0.25 * img.size ? tr : undefined;
    }, 120_000, 200);
    // The cut: the link goes down; when it comes back the carrier's NAT has lost the connection and
    // answers it with resets for a moment (without them, TCP would simply carry on after a short cut).
    const reset = ['INPUT', '-i', dev.link.hostIf, '-p', 'tcp', '--dport', String(server.apiPort), '-j', 'REJECT', '--reject-with', 'tcp-reset'];
    cleanup.add('reset rule', () => execa('iptables', ['-D', ...reset]).then(() => undefined, () => undefined));
    await dev.link.down();
    await execa('iptables', ['-I', ...reset]);
    await sleep(3_000);
    await dev.link.up();
    await sleep(2_000);
    await execa('iptables', ['-D', ...reset]);
    t.diagnostic(`cut at ${((seen.bytes / img.size) * 100).toFixed(0)} % (${seen.bytes} B) for 5 s`);

    const before = await waitFor('the transfer past 60 %', async () => {
      const tr = await transferOf(img.digest);
      return tr && tr.bytes >= 0.6 * img.size ? tr : undefined;
    }, 180_000, 200);
    await dev.agent!.kill9();
    t.diagnostic(`agent kill -9 at ${((before.bytes / img.size) * 100).toFixed(0)} %`);
    // What the killed agent kept: verified chunks in its state dir, never a whole archive.
    dev.startAgent({ args: agentArgs });

    await waitFor('pod big Running', async () => (await podPhase('big')) === 'Running', 300_000, 250).catch(async (err) => {
      throw new Error(`${(err as Error).message}; transfer ${JSON.stringify(await transferOf(img.digest))}\n${dev.agent?.output().slice(-4000)}`);
    });
    assert.ok(await loaded(img.digest), 'the node reports the archive loaded');
    const served = (await bytesServed()) - servedBefore;
    t.diagnostic(`50 MiB archive (${img.size} B): ${served} B served in all (${(served / img.size).toFixed(3)} ×)`);
    assert.ok(served >= img.size, `the server sent ${served} B of a ${img.size} B archive`);
    assert.ok(served <= 1.1 * img.size, `the server sent ${served} B for a ${img.size} B archive: more than 1.1 ×`);
    assert.match(dev.agent!.output(), /resum/i, 'the restarted agent says it resumed the transfer');
    // Nothing left behind: the archive is in podman, not on the device's disk twice.
    const leftovers = await readdir(join(dev.stateDir, 'images'), { recursive: true }).catch(() => [] as string[]);
    assert.deepEqual(leftovers.filter((f) => /\.part$|\.tar$/.test(String(f))), [], 'no partial or archive file left in the state dir');
  });

  // 30 % of the packets toward the device (the image's direction) and 15 % of its answers: on this link
  // TCP still moves ~1 MiB in a few seconds. 30 % both ways leaves TCP ~3 KB/s (measured here with curl:
  // 310 KB in 120 s), which no transfer protocol over TCP gets a 4 MiB image through in a test's time.
  test('30 % packet loss toward the device (15 % back): an image still arrives and the pod runs', async (t) => {
    const img = await pushBig('localhost/drover-lossy:1', 1);
    await dev.link.loss(0.3, 0.15);
    cleanup.add('loss rules', () => dev.link.clearLoss());
    const t0 = performance.now();
    try {
      assert.equal((await server.api('POST', '/api/v1/namespaces/default/pods', podManifest('lossy', NODE, { image: 'localhost/drover-lossy:1' }))).status, 201);
      // Measured 17-292 s on this machine kind: under this loss some requests stall, and the fetcher's backoff between
      // drops grows to 30 s (the manager's between failed transfers from 10 s) — the wait is for the worst of those.
      await waitFor('pod lossy Running', async () => (await podPhase('lossy').catch(() => undefined)) === 'Running', 420_000, 500).catch(async (err) => {
        throw new Error(`${(err as Error).message}; transfer ${JSON.stringify(await transferOf(img.digest).catch(() => undefined))}\n${dev.agent?.output().slice(-4000)}`);
      });
      const dropped = await dev.link.lossDropped();
      t.diagnostic(`${(img.size / MiB).toFixed(1)} MiB over 30 % loss: Running after ${secs(performance.now() - t0)}, ${dropped.toDevice + dropped.toHost} packets dropped`);
      assert.ok(dropped.toDevice > 0, 'the loss rules dropped packets');
    } finally {
      await dev.link.clearLoss();
    }
    assert.ok(await loaded(img.digest));
  });

  test('airgap: an archive loaded on the device with no link (drover image load) is reported to the server, and a pod on it runs without a byte fetched', async (t) => {
    // The image is pushed too (so the server knows its digest), but the device gets it by hand.
    const img = await pushBig('localhost/drover-airgap:1', 2);
    const onDevice = join(dev.stateDir, '..', `airgap-${Date.now()}.tar`);
    await execa('cp', [img.file, onDevice]);
    cleanup.add('airgap archive', () => execa('rm', ['-f', onDevice]).then(() => undefined));
    const servedBefore = await bytesServed();
    await dev.link.down();
    try {
      const load = dev.link.spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'image', 'load', onDevice, '--state-dir', dev.stateDir, '--podman-root', dev.sb.root, '--podman-runroot', dev.sb.runroot], { cwd: REPO, env: { ...process.env, CONTAINERS_CONF: dev.sb.confPath }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      load.stdout!.on('data', (d: Buffer) => (out += d));
      load.stderr!.on('data', (d: Buffer) => (out += d));
      const code = await new Promise<number | null>((r) => load.on('exit', r));
      t.diagnostic(`drover image load with the link down: ${out.trim()}`);
      assert.equal(code, 0, out);
    } finally {
      await dev.link.up();
    }
    await waitFor('the server to know the device has it', () => loaded(img.digest), 120_000, 500);
    assert.equal((await server.api('POST', '/api/v1/namespaces/default/pods', podManifest('airgap', NODE, { image: 'localhost/drover-airgap:1' }))).status, 201);
    await waitFor('pod airgap Running', async () => (await podPhase('airgap')) === 'Running', 120_000, 250);
    assert.equal((await bytesServed()) - servedBefore, 0, 'nothing was fetched from the server');
  });
});
