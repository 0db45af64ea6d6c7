/**
 * `kubectl apply --server-side` (v1.32, the real binary) against drover: create → change → re-apply,
 * a conflict with the field manager of `kubectl scale` (exit 1, Kubernetes' message), taken over with
 * --force-conflicts, a field dropped from the manifest removed, and the managedFields kubectl shows.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { KUBECTL, startKubectlCluster, type KubectlCluster, type KubectlRun } from '../helpers/kubectl.js';

let k: KubectlCluster;
let dir: string;

function kubectl(...args: string[]): Promise<KubectlRun> {
  return k.kubectl(args);
}

function ok(...args: string[]): Promise<string> {
  return k.good(args);
}

async function get(path: string): Promise<any> {
  const r = await k.t.api('GET', path);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

const DEPLOY = '/apis/apps/v1/namespaces/default/deployments/ssa';

async function applyFile(name: string, obj: unknown, ...flags: string[]) {
  await writeFile(join(dir, name), stringify(obj));
  return kubectl('apply', '--server-side', ...flags, '-f', join(dir, name));
}

function deployment(image: string, replicas: number, labels: Record<string, string> = { app: 'ssa' }) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'ssa', labels },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'ssa' } },
      template: { metadata: { labels: { app: 'ssa' } }, spec: { containers: [{ name: 'web', image, ports: [{ containerPort: 80 }] }] } },
    },
  };
}

describe('kubectl apply --server-side', { skip: existsSync(KUBECTL) ? false : `${KUBECTL} is not installed` }, () => {
  before(async () => {
    k = await startKubectlCluster({ nodes: [] });
    dir = k.dir;
  });
  after(async () => {
    await k?.stop();
  });

  it('create, change, re-apply: "serverside-applied", the change stored, one Apply entry for kubectl', async () => {
    const created = await applyFile('d.yaml', deployment('localhost/nginx:1', 2, { app: 'ssa', tier: 'front' }));
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /deployment.apps\/ssa serverside-applied/);
    const changed = await applyFile('d.yaml', deployment('localhost/nginx:2', 3, { app: 'ssa', tier: 'front' }));
    assert.equal(changed.code, 0, changed.stderr);
    const d = await get(DEPLOY);
    assert.equal(d.spec.template.spec.containers[0].image, 'localhost/nginx:2');
    assert.equal(d.spec.replicas, 3);
    const shown = JSON.parse(await ok('get', 'deployment', 'ssa', '-o', 'json', '--show-managed-fields'));
    const mine = shown.metadata.managedFields.find((e: { manager: string }) => e.manager === 'kubectl');
    assert.equal(mine.operation, 'Apply');
    assert.deepEqual(Object.keys(mine.fieldsV1['f:spec']).sort(), ['f:replicas', 'f:selector', 'f:template']);
  });

  it('a field kubectl scale changed conflicts (exit 1, Kubernetes\' message); --force-conflicts takes it back', async () => {
    await ok('scale', 'deployment', 'ssa', '--replicas', '5');
    const refused = await applyFile('d.yaml', deployment('localhost/nginx:2', 3, { app: 'ssa', tier: 'front' }));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale"/);
    assert.match(refused.stderr, /\.spec\.replicas/);
    assert.equal((await get(DEPLOY)).spec.replicas, 5, 'nothing stored by the refused apply');
    const forced = await applyFile('d.yaml', deployment('localhost/nginx:2', 3, { app: 'ssa', tier: 'front' }), '--force-conflicts');
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((await get(DEPLOY)).spec.replicas, 3);
  });

  it('a label dropped from the manifest is removed; one another manager set stays', async () => {
    await ok('label', 'deployment', 'ssa', 'owner=ops');
    const r = await applyFile('d.yaml', deployment('localhost/nginx:2', 3));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await get(DEPLOY)).metadata.labels, { app: 'ssa', owner: 'ops' });
  });

  it('a manifest for another object than the path, or not YAML, is refused with the cause', async () => {
    const bad = await kubectl('apply', '--server-side', '-f', '-');
    assert.equal(bad.code, 1);
    await writeFile(join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: "1"\n');
    assert.match(await ok('apply', '--server-side', '-f', join(dir, 'cm.yaml')), /configmap\/cfg serverside-applied/);
    await writeFile(join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  b: "2"\n');
    await ok('apply', '--server-side', '-f', join(dir, 'cm.yaml'));
    assert.deepEqual((await get('/api/v1/namespaces/default/configmaps/cfg')).data, { b: '2' });
  });
});
