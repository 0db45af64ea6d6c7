/**
 * ConfigMaps and Secrets on their way to the node: which ones a node's snapshot carries, when the
 * publisher sends it again, and the agent's cache of them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TargetState } from '../../agent/target.js';
import { DesiredPublisher } from '../../server/desired/publisher.js';
import { configRefs, contentDigest, snapshotFor } from '../../server/desired/snapshot.js';
import { LevelStore } from '../../server/store/level.js';
import type { ConfigMap, Secret } from '../../src/api/config.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function cm(name: string, data: Record<string, string>, namespace = 'default'): ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data };
}

function secret(name: string, data: Record<string, string>, namespace = 'default'): Secret {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: 'Opaque', data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) };
}

function pod(name: string, node: string, spec: Partial<Pod['spec']> = {}, namespace = 'default'): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, uid: `uid-${name}` },
    spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 10, nodeName: node, containers: [{ name: 'c', image: 'img' }], ...spec },
  };
}

describe('snapshot: ConfigMaps and Secrets per node', () => {
  const usesAll = pod('all', 'edge-1', {
    containers: [
      {
        name: 'c',
        image: 'img',
        env: [
          { name: 'A', valueFrom: { configMapKeyRef: { name: 'env-cm', key: 'a' } } },
          { name: 'P', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
        ],
        envFrom: [{ configMapRef: { name: 'from-cm' } }, { secretRef: { name: 'from-secret' } }],
      },
    ],
    volumes: [
      { name: 'v1', configMap: { name: 'vol-cm' } },
      { name: 'v2', secret: { secretName: 'vol-secret' } },
    ],
  });
  const plain = pod('plain', 'edge-2');
  const otherNs = pod('other', 'edge-2', { containers: [{ name: 'c', image: 'img', envFrom: [{ secretRef: { name: 'db' } }] }] }, 'prod');

  const cms = [cm('env-cm', { a: '1' }), cm('from-cm', { X: 'x' }), cm('vol-cm', { 'f.conf': 'k=v' }), cm('unused', { z: 'z' })];
  const secrets = [secret('db', { password: 'hunter2' }), secret('db', { password: 'prod-pw' }, 'prod'), secret('from-secret', { T: 't' }), secret('vol-secret', { key: 'k' }), secret('unused', { u: 'u' })];

  it('collects every reference: env valueFrom, envFrom and volumes', () => {
    const s = snapshotFor('edge-1', [usesAll], cms, secrets);
    assert.deepEqual([...configRefs(s.pods)].sort(), [
      'ConfigMap/default/env-cm',
      'ConfigMap/default/from-cm',
      'ConfigMap/default/vol-cm',
      'Secret/default/db',
      'Secret/default/from-secret',
      'Secret/default/vol-secret',
    ]);
  });

  it('carries only what the node\'s pods reference; secret data stays base64', () => {
    const s = snapshotFor('edge-1', [usesAll, plain, otherNs], cms, secrets);
    assert.deepEqual(s.pods.map((p) => p.name), ['all']);
    assert.deepEqual(s.configMaps.map((c) => c.name), ['env-cm', 'from-cm', 'vol-cm']);
    assert.deepEqual(s.secrets.map((x) => `${x.namespace}/${x.name}`), ['default/db', 'default/from-secret', 'default/vol-secret']);
    assert.equal(s.secrets[0]!.data.password, b64('hunter2'));
    assert.deepEqual(s.configMaps[0], { namespace: 'default', name: 'env-cm', data: { a: '1' } });
  });

  it('never sends a Secret to a node that runs no pod using it (namespaces apart)', () => {
    const s = snapshotFor('edge-2', [usesAll, plain, otherNs], cms, secrets);
    assert.deepEqual(s.configMaps, []);
    assert.deepEqual(s.secrets.map((x) => `${x.namespace}/${x.name}`), ['prod/db']);
    assert.equal(s.secrets[0]!.data.password, b64('prod-pw'));
    const empty = snapshotFor('edge-3', [usesAll, plain, otherNs], cms, secrets);
    assert.deepEqual(empty, { pods: [], configMaps: [], secrets: [] });
  });

  it('a referenced object that does not exist is absent; stringData is folded into data', () => {
    const withString: Secret = { ...secret('from-secret', {}), data: undefined, stringData: { T: 'plain' } };
    const s = snapshotFor('edge-1', [usesAll], [], [withString]);
    assert.deepEqual(s.configMaps, []);
    assert.deepEqual(s.secrets, [{ namespace: 'default', name: 'from-secret', type: 'Opaque', data: { T: b64('plain') } }]);
  });

  it('the digest covers ConfigMap and Secret content', () => {
    const a = snapshotFor('edge-1', [usesAll], cms, secrets);
    const b = snapshotFor('edge-1', [usesAll], [cm('env-cm', { a: '2' }), ...cms.slice(1)], secrets);
    const c = snapshotFor('edge-1', [usesAll], cms, [secret('db', { password: 'new' }), ...secrets.slice(1)]);
    assert.notEqual(contentDigest(a), contentDigest(b));
    assert.notEqual(contentDigest(a), contentDigest(c));
    assert.equal(contentDigest(a), contentDigest(snapshotFor('edge-1', [usesAll], [...cms].reverse(), [...secrets].reverse())));
  });
});

describe('DesiredPublisher with ConfigMaps and Secrets', () => {
  async function setup(t: { after(fn: () => Promise<void>): void }) {
    const dir = await mkdtemp(join(tmpdir(), 'drover-pub-'));
    const store = await LevelStore.open({ path: join(dir, 'db') });
    const sent: payloads.Desired[] = [];
    const publisher = new DesiredPublisher({ store, sink: { publishDesired: async (d) => void sent.push(d), clearRetained: async () => {} }, logger: silentLogger, debounceMs: 5 });
    t.after(async () => {
      publisher.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const settle = async () => {
      await new Promise((r) => setTimeout(r, 40));
      await publisher.flush();
    };
    return { store, sent, publisher, settle };
  }
  const obj = (o: unknown) => o as ApiObject;

  it('republishes only the nodes whose pods reference a changed ConfigMap or Secret', async (t) => {
    const { store, sent, publisher, settle } = await setup(t);
    for (const n of ['edge-1', 'edge-2']) await store.create(obj({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {} }));
    await store.create(obj(cm('app', { greeting: 'hi' })));
    await store.create(obj(secret('db', { password: 'pw1' })));
    await store.create(obj(pod('a', 'edge-1', { containers: [{ name: 'c', image: 'img', env: [{ name: 'G', valueFrom: { configMapKeyRef: { name: 'app', key: 'greeting' } } }, { name: 'P', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }] })));
    await store.create(obj(pod('b', 'edge-2')));
    await publisher.start();
    await settle();
    const last = (node: string) => sent.filter((d) => d.node === node).at(-1)!;
    assert.deepEqual(last('edge-1').configMaps, [{ namespace: 'default', name: 'app', data: { greeting: 'hi' } }]);
    assert.deepEqual(last('edge-1').secrets.map((s) => s.name), ['db']);
    assert.deepEqual([last('edge-2').configMaps, last('edge-2').secrets], [[], []]);
    assert.deepEqual(payloads.desired.parse(JSON.parse(JSON.stringify(last('edge-1')))), last('edge-1'), 'the payload passes the contract');

    const before = sent.length;
    const gen = last('edge-1').generation;
    await store.patch('ConfigMap', 'default', 'app', (c) => ({ ...c, data: { greeting: 'hello' } }) as ApiObject);
    await settle();
    assert.deepEqual(sent.slice(before).map((d) => d.node), ['edge-1'], 'only edge-1 uses the ConfigMap');
    assert.equal(last('edge-1').configMaps[0]!.data.greeting, 'hello');
    assert.ok(last('edge-1').generation > gen);

    const before2 = sent.length;
    await store.patch('Secret', 'default', 'db', (s) => ({ ...s, data: { password: b64('pw2') } }) as ApiObject);
    await store.create(obj(cm('unrelated', { x: 'y' })));
    await settle();
    assert.deepEqual(sent.slice(before2).map((d) => d.node), ['edge-1']);
    assert.equal(last('edge-1').secrets[0]!.data.password, b64('pw2'));
  });

  it('a ConfigMap created after the pod that needs it reaches the node', async (t) => {
    const { store, sent, publisher, settle } = await setup(t);
    await store.create(obj({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: {} }));
    await store.create(obj(pod('a', 'edge-1', { volumes: [{ name: 'v', configMap: { name: 'late' } }] })));
    await publisher.start();
    await settle();
    assert.deepEqual(sent.at(-1)!.configMaps, []);
    await store.create(obj(cm('late', { k: 'v' })));
    await settle();
    assert.deepEqual(sent.at(-1)!.configMaps.map((c) => c.name), ['late']);
  });
});

describe('TargetState cache with ConfigMaps and Secrets', () => {
  const base = { node: 'edge-1', generation: 5, pods: [], ts: '2024-01-01T00:00:00Z' };

  it('loads a cache written before ConfigMaps and Secrets existed', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-target-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'desired.json'), JSON.stringify({ format: 1, savedAt: 'then', desired: base }));
    const target = new TargetState(dir, silentLogger);
    const r = await target.load();
    assert.equal(r.corrupt, undefined);
    assert.deepEqual(r.desired, { ...base, configMaps: [], secrets: [] });
  });

  it('persists them (file mode 0600) and accepts a same-generation snapshot whose config differs', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-target-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const target = new TargetState(dir, silentLogger);
    const d: payloads.Desired = { ...base, configMaps: [{ namespace: 'default', name: 'app', data: { a: '1' } }], secrets: [{ namespace: 'default', name: 'db', data: { p: b64('x') } }] };
    assert.equal(await target.accept(d), true);
    assert.equal(await target.accept(structuredClone(d)), false);
    assert.equal(await target.accept({ ...d, configMaps: [{ namespace: 'default', name: 'app', data: { a: '2' } }] }), true);
    assert.equal((await stat(join(dir, 'desired.json'))).mode & 0o777, 0o600);
    const again = new TargetState(dir, silentLogger);
    const loaded = await again.load();
    assert.equal(loaded.desired!.configMaps[0]!.data.a, '2');
    assert.equal(loaded.desired!.secrets[0]!.data.p, b64('x'));
    assert.match(await readFile(join(dir, 'desired.json'), 'utf8'), /"secrets"/);
  });
});

describe('contract', () => {
  it('desired without configMaps/secrets and hello without devices still parse', () => {
    assert.deepEqual(payloads.desired.parse({ node: 'n', generation: 1, pods: [], ts: 't' }), { node: 'n', generation: 1, pods: [], ts: 't', configMaps: [], secrets: [] });
    const hello = {
      agentVersion: '0',
      contractVersion: 1,
      node: 'n',
      bootId: 'b',
      arch: 'arm64',
      os: 'linux',
      osImage: 'x',
      kernelVersion: 'k',
      hostname: 'h',
      cpu: { cores: 1, model: 'm' },
      memoryBytes: 1,
      addresses: [],
      runtime: { name: 'podman', version: '4' },
    };
    assert.equal(payloads.hello.parse(hello).devices, undefined);
    assert.deepEqual(payloads.hello.parse({ ...hello, devices: ['/dev/ttyUSB0'] }).devices, ['/dev/ttyUSB0']);
  });
});

describe('snapshot: the pod as the agent gets it', () => {
  it('leaves out where the pod may go (node selector, affinity, tolerations), keeps what runs it, and still validates', () => {
    const placed = pod('ds-pod', 'edge-1', {
      nodeSelector: { arch: 'arm64' },
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] }] } } },
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
      ],
      hostNetwork: true,
      activeDeadlineSeconds: 60,
    });
    const snap = snapshotFor('edge-1', [placed], [], []);
    const sent = snap.pods[0]!;
    assert.equal(sent.spec.nodeSelector, undefined);
    assert.equal(sent.spec.affinity, undefined);
    assert.equal(sent.spec.tolerations, undefined);
    assert.deepEqual(
      { containers: sent.spec.containers, hostNetwork: sent.spec.hostNetwork, activeDeadlineSeconds: sent.spec.activeDeadlineSeconds, restartPolicy: sent.spec.restartPolicy, nodeName: sent.spec.nodeName, grace: sent.spec.terminationGracePeriodSeconds },
      { containers: placed.spec.containers, hostNetwork: true, activeDeadlineSeconds: 60, restartPolicy: 'Always', nodeName: 'edge-1', grace: 10 },
    );
    assert.ok(placed.spec.tolerations?.length === 2 && placed.spec.nodeSelector, 'the stored pod is not touched');
    // What the agent checks on arrival.
    assert.ok(payloads.desiredPod.safeParse(sent).success);
    assert.ok(JSON.stringify(sent).length < JSON.stringify(placed.spec).length - 300, 'the message is smaller');
  });
});
