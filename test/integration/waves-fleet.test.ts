/**
 * Waved DaemonSet rollouts over a fleet of 50 devices: the real server (store, controllers, embedded
 * broker over TLS) and 50 simulated agents (test/helpers/sim-agent.ts: each joins with its own
 * certificate and speaks the MQTT contract; containers start at once, an image in BAD cannot be
 * pulled, so its pod reports ErrImagePull). What is asserted comes from the API — DaemonSet
 * status.drover.rollout, Events, every pod's revision label — and from what each device was asked
 * to run; never timings.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import { POD_TEMPLATE_HASH, podTemplateHash } from '../../src/api/revisions.js';
import { daemonSet, type DaemonSet, type Deployment, type WavedRolloutStatus } from '../../src/api/workloads.js';
import { parseObject } from '../../src/api/validate.js';
import { REVISION_LABEL } from '../../server/controllers/daemonset.js';
import { waveSets } from '../../server/controllers/waves.js';
import { generateKeyPem } from '../../server/pki/x509.js';
import { drover } from '../helpers/cli.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { SimAgent } from '../helpers/sim-agent.js';

const NODES = 50;
const BAD = new Set(['localhost/fleet-app:bad']);
const DS = '/apis/apps/v1/namespaces/default/daemonsets';
const ROLLOUT = { waves: [{ nodes: 2 }, { percent: 20 }, { percent: 50 }], gate: { readySeconds: 1, timeoutSeconds: 120 }, offlineNodes: 'wait' };
const node = (i: number) => `edge-${String(i).padStart(2, '0')}`;

interface ApiPod {
  metadata: { name: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}
const ready = (p: ApiPod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

function manifest(image: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'fleet' },
    spec: {
      selector: { matchLabels: { app: 'fleet' } },
      template: { metadata: { labels: { app: 'fleet' } }, spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'app', image, resources: { requests: { cpu: '1m', memory: '1Mi' } } }] } },
      drover: { rollout: ROLLOUT },
    },
  };
}

describe(`waved DaemonSet rollout over ${NODES} agents`, () => {
  let cluster: TestServer;
  const agents = new Map<string, SimAgent>();

  const getDs = async (): Promise<DaemonSet> => {
    const r = await cluster.api('GET', `${DS}/fleet`);
    assert.equal(r.status, 200, r.text);
    return r.body;
  };
  const rollout = async (): Promise<WavedRolloutStatus | undefined> => (await getDs()).status?.drover?.rollout;
  const pods = async (): Promise<ApiPod[]> => {
    const r = await cluster.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dfleet');
    assert.equal(r.status, 200, r.text);
    return r.body.items;
  };
  const events = async (): Promise<Array<{ type: string; reason: string; message: string; firstTimestamp: string }>> =>
    (await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=fleet')).body.items;
  const nodes = async (): Promise<Node[]> => (await cluster.api('GET', '/api/v1/nodes')).body.items;
  const hashOf = (image: string) => podTemplateHash(daemonSet.parse(manifest(image)).spec.template);

  /** GET, change the image, PUT (a 409 from a concurrent status write is retried). */
  async function setImage(image: string): Promise<void> {
    for (let i = 0; i < 20; i++) {
      const d = await getDs();
      d.spec.template.spec.containers[0]!.image = image;
      const r = await cluster.api('PUT', `${DS}/fleet`, d);
      if (r.status === 200) return;
      assert.equal(r.status, 409, r.text);
    }
    throw new Error('PUT kept conflicting');
  }

  /** Every node of `names` runs one Ready pod of `hash`. */
  const allOn = (hash: string, names: string[], what: string, timeoutMs = 60_000) =>
    waitFor(
      what,
      async () => {
        const ps = await pods();
        const by = new Map(ps.map((p) => [p.spec.nodeName!, p]));
        const missing = names.filter((n) => {
          const p = by.get(n);
          return !p || p.metadata.labels?.[REVISION_LABEL] !== hash || !ready(p);
        });
        if (missing.length) throw new Error(`not yet: ${missing.map((n) => `${n}=${by.get(n)?.metadata.labels?.[REVISION_LABEL] ?? 'none'}/${by.get(n) ? (ready(by.get(n)!) ? 'ready' : by.get(n)!.status?.phase) : '-'}`).join(', ')}`);
        return ps;
      },
      timeoutMs,
      250,
    );

  /**
   * Watches a rollout until `done` holds: reads every pod, then the status, so the wave seen was
   * stored before (or with) those pods (the controller stores a wave's pass before it writes its pods).
   * Fails if a pod of `hash` runs on a node outside the wave set the status allows at that moment.
   */
  async function watchRollout(hash: string, sets: string[][], done: (r: WavedRolloutStatus) => boolean, opts: { neverBeyond?: number } = {}): Promise<{ waves: number[]; everOn: Set<string>; last: WavedRolloutStatus }> {
    const waves: number[] = [];
    const everOn = new Set<string>();
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ps = await pods();
      const r = (await getDs()).status?.drover?.rollout;
      if (r && r.targetRevision === hash) {
        if (waves.at(-1) !== r.wave) waves.push(r.wave);
        const limit = opts.neverBeyond ?? (r.phase === 'Complete' ? sets.length - 1 : r.wave);
        const allowed = new Set(sets[limit]);
        for (const p of ps) {
          if (p.metadata.labels?.[REVISION_LABEL] !== hash) continue;
          everOn.add(p.spec.nodeName!);
          assert.ok(allowed.has(p.spec.nodeName!), `node ${p.spec.nodeName} runs ${hash} while the rollout is at wave ${r.wave + 1} (${r.phase})`);
        }
        if (done(r)) return { waves, everOn, last: r };
      }
      assert.ok(Date.now() < deadline, `rollout of ${hash} not done: ${JSON.stringify(r)}`);
      await new Promise((res) => setTimeout(res, 150));
    }
  }

  before(async () => {
    const t0 = Date.now();
    cluster = await startTestServer();
    const k = generateKeyPem();
    const deviceKey = { key: k.privateKey, publicKey: k.publicKey };
    // Ten joins at a time, each with its own certificate request.
    for (let i = 0; i < NODES; i += 10) {
      await Promise.all(
        Array.from({ length: Math.min(10, NODES - i) }, async (_, j) => {
          const sim = new SimAgent({ node: node(i + j), apiUrl: cluster.apiUrl, joinToken: cluster.joinToken, mqttUrl: cluster.server.advertisedMqttUrl, deviceKey, failImages: BAD, heartbeatSeconds: 5 });
          await sim.start();
          agents.set(sim.node, sim);
        }),
      );
    }
    await waitFor(
      `${NODES} nodes Ready`,
      async () => (await nodes()).filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length === NODES,
      120_000,
      500,
    );
    console.log(`${NODES} agents joined and Ready in ${Date.now() - t0} ms`);
    const r = await cluster.api('POST', DS, manifest('localhost/fleet-app:1'));
    assert.equal(r.status, 201, r.text);
    const t1 = Date.now();
    await allOn(hashOf('localhost/fleet-app:1'), [...agents.keys()], 'first revision on every node', 90_000);
    await waitFor('first revision is the stable one', async () => (await rollout())?.phase === 'Complete');
    console.log(`first revision on ${NODES} nodes in ${Date.now() - t1} ms (no waves: nothing to roll from)`);
  });
  after(async () => {
    for (const a of agents.values()) await a.stop();
    await cluster?.stop();
  });

  test('waves in order; a node offline during the rollout gets the final revision when it returns', async () => {
    const h1 = hashOf('localhost/fleet-app:1');
    const h2 = hashOf('localhost/fleet-app:2');
    const ds = await getDs();
    const sets = waveSets(ds, ds.spec.drover!.rollout!, await nodes());
    assert.deepEqual(sets.map((s) => s.length), [2, 10, 25, 50]);

    // A device of the third wave goes offline.
    const away = sets[2]!.find((n) => !sets[1]!.includes(n))!;
    await agents.get(away)!.stop();
    await waitFor(`${away} offline`, async () => (await nodes()).find((n) => n.metadata.name === away)?.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True');

    const t0 = Date.now();
    await setImage('localhost/fleet-app:2');
    const seen = await watchRollout(h2, sets, (r) => r.phase === 'Complete');
    const took = Date.now() - t0;
    console.log(`4-wave rollout over ${NODES} nodes (1 offline): Complete in ${took} ms; waves seen ${seen.waves.map((w) => w + 1).join(' → ')}`);
    assert.ok(seen.waves.every((w, i) => i === 0 || w > seen.waves[i - 1]!), `waves went in order: ${seen.waves}`);
    const passed = (await events())
      .filter((e) => e.reason === 'RolloutWavePassed')
      .map((e) => Number(/^wave (\d+)\//.exec(e.message)![1]))
      .sort();
    assert.deepEqual(passed, [1, 2, 3], 'one RolloutWavePassed event per wave but the last, in order');
    assert.equal(seen.last.stableRevision, h2);
    const online = [...agents.keys()].filter((n) => n !== away);
    await allOn(h2, online, 'every online node on :2');
    // The offline node's desired pod was replaced while it was away: it is counted, not Ready.
    const r = (await rollout())!;
    assert.equal(r.counts.updated, NODES, 'the offline node has its :2 pod in its desired state');
    assert.equal(r.counts.ready, NODES - 1);
    assert.notEqual(h1, h2);

    // It returns (same certificate) and runs :2, never having run :1 again.
    const back = agents.get(away)!;
    back.ran.clear();
    await back.start();
    await allOn(h2, [away], `${away} back and on :2`);
    assert.deepEqual([...back.ran], ['localhost/fleet-app:2']);
  });

  test('a bad image fails wave 1 and the fleet returns to the old revision; no node beyond wave 1 ever ran it', async () => {
    const good = hashOf('localhost/fleet-app:2');
    const bad = hashOf('localhost/fleet-app:bad');
    const ds = await getDs();
    const sets = waveSets(ds, ds.spec.drover!.rollout!, await nodes());

    await setImage('localhost/fleet-app:bad');
    const seen = await watchRollout(bad, sets, (r) => r.phase === 'RolledBack', { neverBeyond: 0 });
    assert.ok([...seen.everOn].every((n) => sets[0]!.includes(n)));
    assert.match(seen.last.message, /^rolled back: wave 1\/4 \(2 nodes\) failed its gate/);
    // The Events are recorded right after the status that they explain.
    const evs = await waitFor('RolloutWaveFailed and RolledBack events', async () => {
      const l = await events();
      return l.some((e) => e.reason === 'RolloutWaveFailed') && l.some((e) => e.reason === 'RolledBack') ? l : undefined;
    });
    const failed = evs.find((e) => e.reason === 'RolloutWaveFailed')!;
    assert.equal(failed.type, 'Warning');
    assert.match(failed.message, /ErrImagePull|ImagePullBackOff/);
    assert.ok(sets[0]!.some((n) => failed.message.includes(n)), `the event names the node: ${failed.message}`);
    assert.ok(evs.some((e) => e.reason === 'RolledBack' && e.type === 'Warning'));
    // The stable template is back in the spec.
    const after = await getDs();
    assert.equal(after.spec.template.spec.containers[0]!.image, 'localhost/fleet-app:2');

    // Wave 1 back on the stable revision; nobody else ever ran the bad one.
    const ps = await allOn(good, [...agents.keys()], 'every node back on :2');
    console.log(`rollback: every node on the stable revision, Ready, ${Date.now() - Date.parse(failed.firstTimestamp)} ms after the RolloutWaveFailed event (polled every 250 ms)`);
    assert.equal(ps.filter((p) => p.metadata.labels?.[REVISION_LABEL] === bad).length, 0);
    for (const [n, a] of agents) {
      if (!sets[0]!.includes(n)) assert.ok(!a.asked.has('localhost/fleet-app:bad'), `${n} beyond wave 1 was asked to run the bad image`);
      else assert.ok(a.asked.has('localhost/fleet-app:bad'), `${n} of wave 1 tried the bad image`);
    }
    const r = (await rollout())!;
    assert.equal(r.phase, 'RolledBack', 'stays RolledBack until the next revision');
    assert.equal(r.stableRevision, good);
  });

  test('rollout pause holds the wave (CLI: pause, status, describe, resume); a newer revision supersedes a rollout in flight', async () => {
    const h3 = hashOf('localhost/fleet-app:3');
    const h4 = hashOf('localhost/fleet-app:4');
    const ds = await getDs();
    const sets = waveSets(ds, ds.spec.drover!.rollout!, await nodes());

    await setImage('localhost/fleet-app:3');
    await watchRollout(h3, sets, (r) => r.wave >= 1 && r.phase === 'Progressing');

    const env = { DROVER_SERVER: cluster.apiUrl, DROVER_TOKEN: cluster.token };
    const paused = await drover(env, ['rollout', 'pause', 'daemonset/fleet']);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal(paused.stdout, 'daemonset.apps/fleet paused\n');
    const held = await waitFor('Paused', async () => {
      const r = await rollout();
      return r?.phase === 'Paused' ? r : undefined;
    });
    // Old-revision pods still running: a pause stops no more of them. (A node whose old pod was stopped just
    // before the pause still gets its new one: a daemon is not left missing from a node.)
    const oldRunning = async () => (await pods()).filter((p) => p.metadata.labels?.[REVISION_LABEL] !== h3 && !p.metadata.deletionTimestamp).length;
    const oldAtPause = await oldRunning();
    // Longer than the gate's readySeconds (1 s) and a few controller passes: the wave stays where it is.
    await new Promise((res) => setTimeout(res, 2_500));
    assert.equal((await rollout())!.wave, held.wave, 'no wave passes while paused');
    assert.equal(await oldRunning(), oldAtPause, 'no old pod stopped while paused');
    const st = await drover(env, ['rollout', 'status', 'daemonset/fleet', '--watch=false']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`^Waiting for daemon set "fleet" rollout to be resumed: wave ${held.wave + 1}/4 \\(\\d+%\\): \\d+ updated, \\d+ ready, \\d+ pending, paused at wave ${held.wave + 1}/4`));
    const desc = await drover(env, ['describe', 'daemonset', 'fleet']);
    assert.match(desc.stdout, /Waved Rollout:[\s\S]*Waves:\s+2 nodes, 20%, 50%, 100%[\s\S]*Paused:\s+true[\s\S]*Phase:\s+Paused/);
    const resumed = await drover(env, ['rollout', 'resume', 'daemonset/fleet']);
    assert.equal(resumed.code, 0, resumed.stderr);
    await watchRollout(h3, sets, (r) => r.phase === 'Progressing');

    await setImage('localhost/fleet-app:4');
    const seen = await watchRollout(h4, sets, (r) => r.phase === 'Complete');
    assert.equal(seen.waves[0], 0, 'the newer revision starts again from wave 1');
    const evs = await events();
    assert.ok(evs.some((e) => e.reason === 'RolloutSuperseded' && e.message.includes(h3) && e.message.includes(h4)), JSON.stringify(evs.filter((e) => e.reason.startsWith('Rollout'))));
    const ps = await allOn(h4, [...agents.keys()], 'every node on :4');
    assert.equal(ps.filter((p) => p.metadata.labels?.[REVISION_LABEL] === h3).length, 0);
  });
  test('a Deployment rolls out in waves of replicas; a bad image in wave 1 rolls back with at most wave 1 replicas touched', async () => {
    const DEPLOY = '/apis/apps/v1/namespaces/default/deployments';
    const REPLICAS = 20;
    const web = (image: string) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: {
        replicas: REPLICAS,
        selector: { matchLabels: { app: 'web' } },
        template: { metadata: { labels: { app: 'web' } }, spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'web', image, resources: { requests: { cpu: '1m', memory: '1Mi' } } }] } },
        drover: { rollout: { waves: [{ nodes: 2 }, { percent: 50 }], gate: { readySeconds: 1, timeoutSeconds: 120 } } },
      },
    });
    const webHash = (image: string) => podTemplateHash((parseObject(web(image)).object as Deployment).spec.template);
    const getD = async (): Promise<Deployment> => (await cluster.api('GET', `${DEPLOY}/web`)).body;
    const webPods = async (): Promise<ApiPod[]> => (await cluster.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb')).body.items;
    const setWebImage = async (image: string) => {
      for (let i = 0; ; i++) {
        const d = await getD();
        d.spec.template.spec.containers[0]!.image = image;
        const r = await cluster.api('PUT', `${DEPLOY}/web`, d);
        if (r.status === 200) return;
        assert.ok(r.status === 409 && i < 20, r.text);
      }
    };
    /** Pods of the template whose image is `image` (by pod-template-hash), all Ready, REPLICAS of them, and nothing else. */
    const allWeb = (image: string) =>
      waitFor(
        `${REPLICAS} Ready pods of ${image}`,
        async () => {
          const ps = await webPods();
          const hash = webHash(image);
          return ps.length === REPLICAS && ps.every((p) => ready(p) && p.metadata.labels?.[POD_TEMPLATE_HASH] === hash) ? ps : undefined;
        },
        90_000,
        250,
      );
    const created = await cluster.api('POST', DEPLOY, web('localhost/web:1'));
    assert.equal(created.status, 201, created.text);
    await allWeb('localhost/web:1');
    await waitFor('web :1 stable', async () => (await getD()).status?.drover?.rollout?.phase === 'Complete');
    const stableHash = webHash('localhost/web:1');

    // :bad — wave 1 is 2 replicas; never more pods of the bad revision than that.
    await setWebImage('localhost/fleet-app:bad');
    let maxBad = 0;
    let last: WavedRolloutStatus | undefined;
    await waitFor(
      'web RolledBack',
      async () => {
        const ps = await webPods();
        const d = await getD();
        last = d.status?.drover?.rollout;
        const bad = ps.filter((p) => p.metadata.labels?.[POD_TEMPLATE_HASH] !== stableHash).length;
        maxBad = Math.max(maxBad, bad);
        return last?.phase === 'RolledBack';
      },
      90_000,
      150,
    );
    assert.ok(maxBad <= 2, `${maxBad} pods of the bad revision (wave 1 allows 2)`);
    assert.match(last!.message, /^rolled back: wave 1\/3 \(2 replicas\) failed its gate/);
    const evs = await waitFor('the RolloutWaveFailed event of web', async () => {
      const l: Array<{ type: string; reason: string; message: string }> = (await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=web')).body.items;
      return l.some((e) => e.reason === 'RolloutWaveFailed') ? l : undefined;
    });
    assert.ok(evs.some((e) => e.reason === 'RolloutWaveFailed' && e.type === 'Warning' && /ErrImagePull|ImagePullBackOff/.test(e.message)), JSON.stringify(evs.map((e) => e.reason)));
    const ps = await allWeb('localhost/web:1');
    assert.ok(ps.every((p) => p.metadata.labels?.[POD_TEMPLATE_HASH] === stableHash));

    // :2 rolls out wave by wave; the new revision's pods never exceed the wave's replicas.
    const caps = [2, 10, 20];
    const t2 = Date.now();
    await setWebImage('localhost/web:2');
    const waves: number[] = [];
    await waitFor(
      'web :2 Complete',
      async () => {
        const cur = await webPods();
        const r = (await getD()).status?.drover?.rollout;
        if (r?.targetRevision !== webHash('localhost/web:2')) return undefined;
        if (waves.at(-1) !== r.wave) waves.push(r.wave);
        const fresh = cur.filter((p) => p.metadata.labels?.[POD_TEMPLATE_HASH] === r.targetRevision).length;
        assert.ok(fresh <= caps[r.phase === 'Complete' ? 2 : r.wave]!, `${fresh} new pods at wave ${r.wave + 1}`);
        return r.phase === 'Complete';
      },
      90_000,
      150,
    );
    assert.deepEqual(waves, [0, 1, 2]);
    await allWeb('localhost/web:2');
    console.log(`Deployment of ${REPLICAS} replicas, 3 waves (2, 50 %, 100 %): all on :2 in ${Date.now() - t2} ms`);
  });
});
