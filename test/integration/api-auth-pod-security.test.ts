/**
 * The pod security switch through the real API: host access (hostNetwork, hostPath, privileged,
 * devices) needs the admin role and a namespace labelled drover.io/privileged=true; Deployments
 * are refused at create, so no controller ever holds a template whose pods would be refused.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { withAdmission } from '../../server/admission/store.js';
import { ApiServer } from '../../server/api/server.js';
import { TokenStore } from '../../server/auth/tokens.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';
import { silentLogger } from '../../src/util/logger.js';
import { apiClient, type ApiCall } from '../helpers/http.js';

let dir: string;
let level: LevelStore;
let store: Store;
let server: ApiServer;
let admin: ApiCall;
let view: ApiCall;

const pod = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'main', image: 'busybox' }], ...spec } });
const deployment = (name: string, podSpec: Record<string, unknown>) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'busybox' }], ...podSpec } } },
});

const HOSTILE: Array<[string, Record<string, unknown>, string]> = [
  ['hostnet', { hostNetwork: true }, 'spec.hostNetwork'],
  ['rootfs', { volumes: [{ name: 'root', hostPath: { path: '/' } }], containers: [{ name: 'main', image: 'busybox', volumeMounts: [{ name: 'root', mountPath: '/host' }] }] }, 'spec.volumes[0].hostPath'],
  ['priv', { containers: [{ name: 'main', image: 'busybox', securityContext: { privileged: true } }] }, 'spec.containers[0].securityContext.privileged'],
  ['serial', { containers: [{ name: 'main', image: 'busybox', devices: [{ hostPath: '/dev/ttyUSB0' }] }] }, 'spec.containers[0].devices'],
  // Review F0: a neighbour's link in the emptyDir would be followed on the host when the subPath is bind-mounted.
  [
    'subpath',
    {
      volumes: [{ name: 'work', emptyDir: {} }],
      containers: [
        { name: 'linker', image: 'busybox', command: ['sh', '-c', 'ln -sfn / /work/evil'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
        { name: 'reader', image: 'busybox', volumeMounts: [{ name: 'work', mountPath: '/host', subPath: 'evil' }] },
      ],
    },
    'spec.containers[1].volumeMounts[0].subPath',
  ],
];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-pod-security-'));
  level = await LevelStore.open({ path: join(dir, 'store'), logger: silentLogger });
  store = withAdmission(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  const tokens = await TokenStore.open({ dataDir: dir, logger: silentLogger });
  server = new ApiServer({ store, logger: silentLogger, tokens, logs: async () => '', ready: () => true });
  const { url } = await server.listen('127.0.0.1', 0);
  admin = apiClient(url, tokens.adminToken);
  view = apiClient(url, (await tokens.createApi({ role: 'view' })).token);
});

after(async () => {
  await server?.close();
  await level?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('pod security at the API', () => {
  it('in default, hostNetwork, hostPath /, privileged and devices are refused for admin and view, naming the field; nothing is stored', async () => {
    for (const [name, spec, field] of HOSTILE) {
      const r = await admin('POST', '/api/v1/namespaces/default/pods', pod(name, spec));
      assert.equal(r.status, 403, `${name}: ${r.text}`);
      assert.match(r.body.message, new RegExp(`^pods "${name}" is forbidden: ${field.replace(/[[\].]/g, '\\$&')}: needs a namespace labelled drover\\.io/privileged=true`));
      const v = await view('POST', '/api/v1/namespaces/default/pods', pod(name, spec));
      assert.equal(v.status, 403);
      assert.match(v.body.message, /role view/);
    }
    assert.deepEqual((await store.list('Pod', 'default')).items, []);
  });

  it('a Deployment with hostNetwork is refused at create, not left for its pods to fail', async () => {
    const r = await admin('POST', '/apis/apps/v1/namespaces/default/deployments', deployment('edge-proxy', { hostNetwork: true }));
    assert.equal(r.status, 403, r.text);
    assert.match(r.body.message, /spec\.template\.spec\.hostNetwork: needs a namespace labelled drover\.io\/privileged=true/);
    assert.equal(await store.get('Deployment', 'default', 'edge-proxy'), undefined);
    for (const [kind, plural, group] of [['DaemonSet', 'daemonsets', 'apps/v1'], ['Job', 'jobs', 'batch/v1'], ['ReplicaSet', 'replicasets', 'apps/v1']]) {
      const body = { ...deployment('x', { hostPID: true, restartPolicy: kind === 'Job' ? 'Never' : 'Always' }), apiVersion: group, kind };
      if (kind !== 'ReplicaSet') delete (body.spec as Record<string, unknown>).replicas;
      const k = await admin('POST', `/apis/${group}/namespaces/default/${plural}`, body);
      assert.equal(k.status, 403, `${kind}: ${k.text}`);
      assert.match(k.body.message, /spec\.template\.spec\.hostPID/);
    }
  });

  it('an update that adds host access to an allowed Deployment is refused too', async () => {
    assert.equal((await admin('POST', '/apis/apps/v1/namespaces/default/deployments', deployment('plain', {}))).status, 201);
    const cur = (await admin('GET', '/apis/apps/v1/namespaces/default/deployments/plain')).body;
    cur.spec.template.spec.hostNetwork = true;
    const r = await admin('PUT', '/apis/apps/v1/namespaces/default/deployments/plain', cur);
    assert.equal(r.status, 403, r.text);
    assert.equal((await store.get('Deployment', 'default', 'plain'))?.spec.template.spec.hostNetwork, undefined);
  });

  it('a namespace labelled drover.io/privileged=true allows it for admin only', async () => {
    const ns = await admin('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'edge', labels: { 'drover.io/privileged': 'true' } } });
    assert.equal(ns.status, 201, ns.text);
    for (const [name, spec] of HOSTILE) {
      const v = await view('POST', '/api/v1/namespaces/edge/pods', pod(name, spec));
      assert.equal(v.status, 403);
      const r = await admin('POST', '/api/v1/namespaces/edge/pods', pod(name, spec));
      assert.equal(r.status, 201, `${name}: ${r.text}`);
    }
    assert.equal((await admin('POST', '/apis/apps/v1/namespaces/edge/deployments', deployment('edge-proxy', { hostNetwork: true }))).status, 201);
    // The label is the switch: another value does not count.
    assert.equal((await admin('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'almost', labels: { 'drover.io/privileged': 'yes' } } })).status, 201);
    assert.equal((await admin('POST', '/api/v1/namespaces/almost/pods', pod('hostnet', { hostNetwork: true }))).status, 403);
  });
});

describe('pod security for pods the controllers create', () => {
  it('once the label is removed, a pod from a template admitted earlier is refused by the store (FailedCreate), not run', async () => {
    assert.equal((await admin('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'was-priv', labels: { 'drover.io/privileged': 'true' } } })).status, 201);
    assert.equal((await admin('POST', '/apis/apps/v1/namespaces/was-priv/deployments', deployment('gw', { hostNetwork: true }))).status, 201);
    const ns = (await admin('GET', '/api/v1/namespaces/was-priv')).body;
    delete ns.metadata.labels['drover.io/privileged'];
    assert.equal((await admin('PUT', '/api/v1/namespaces/was-priv', ns)).status, 200);
    // What the ReplicaSet controller does: create the template's pod through the admission store.
    const template = (await store.get('Deployment', 'was-priv', 'gw'))!.spec.template;
    const create = store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { ...template.metadata, name: 'gw-1', namespace: 'was-priv' }, spec: template.spec } as never);
    await assert.rejects(create, (err: Error & { code?: number }) => err.code === 403 && /spec\.hostNetwork: needs a namespace labelled drover\.io\/privileged=true/.test(err.message));
    assert.equal(await store.get('Pod', 'was-priv', 'gw-1'), undefined);
  });
});

describe('hostPath allow-list', () => {
  it('paths under an allowed directory pass in any namespace; climbing out with .. does not', async () => {
    const d = await mkdtemp(join(tmpdir(), 'drover-pod-security-allow-'));
    const lvl = await LevelStore.open({ path: join(d, 'store'), logger: silentLogger });
    const podSecurity = { allowedHostPaths: ['/srv/data'] };
    const st = withAdmission(lvl, { podSecurity });
    await st.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
    const tokens = await TokenStore.open({ dataDir: d, logger: silentLogger });
    const srv = new ApiServer({ store: st, logger: silentLogger, tokens, podSecurity, maxReplicas: 3, logs: async () => '', ready: () => true });
    try {
      const call = apiClient((await srv.listen('127.0.0.1', 0)).url, tokens.adminToken);
      const withPath = (name: string, path: string) => pod(name, { volumes: [{ name: 'v', hostPath: { path } }] });
      assert.equal((await call('POST', '/api/v1/namespaces/default/pods', withPath('cam', '/srv/data/cam1'))).status, 201);
      const out = await call('POST', '/api/v1/namespaces/default/pods', withPath('escape', '/srv/data/../../etc'));
      assert.equal(out.status, 403);
      assert.match(out.body.message, /mounts "\/srv\/data\/\.\.\/\.\.\/etc" from the host \(allowed without it: \/srv\/data\)/);
      // The same server caps replicas at 3 (--max-replicas): a create or an update above it is a 422 naming the field.
      assert.equal((await call('POST', '/apis/apps/v1/namespaces/default/deployments', { ...deployment('three', {}), spec: { ...(deployment('three', {}) as any).spec, replicas: 3 } })).status, 201);
      const four = await call('POST', '/apis/apps/v1/namespaces/default/deployments', { ...deployment('four', {}), spec: { ...(deployment('four', {}) as any).spec, replicas: 4 } });
      assert.equal(four.status, 422, four.text);
      assert.deepEqual(four.body.details.causes.map((c: { field: string }) => c.field), ['spec.replicas']);
      const cur = (await call('GET', '/apis/apps/v1/namespaces/default/deployments/three')).body;
      cur.spec.replicas = 50;
      assert.equal((await call('PUT', '/apis/apps/v1/namespaces/default/deployments/three', cur)).status, 422);
      assert.equal((await st.get('Deployment', 'default', 'three'))?.spec.replicas, 3);
    } finally {
      await srv.close();
      await lvl.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});
