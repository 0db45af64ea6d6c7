/**
 * The real kubectl (/usr/bin/kubectl, v1.32) writing through drover's PATCH paths: the patch each
 * verb sends (client-side apply and edit: strategic merge; label/annotate: merge; scale: merge on
 * /scale; rollout restart: strategic; rollout undo: JSON patch) lands as Kubernetes would apply it,
 * and refused patches exit 1 with a message naming the cause, storing nothing.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { waitFor } from '../helpers/cluster.js';
import { KUBECTL, startKubectlCluster, type KubectlCluster, type KubectlRun } from '../helpers/kubectl.js';

let k: KubectlCluster;
let dir: string;

function kubectl(...args: string[]): Promise<KubectlRun> {
  return k.kubectl(args);
}

function ok(...args: string[]): Promise<string> {
  return k.good(args);
}

async function deployment(): Promise<any> {
  const r = await k.t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web');
  assert.equal(r.status, 200, r.text);
  return r.body;
}

function manifest(image: string, env: Array<{ name: string; value: string }>): string {
  return stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', labels: { app: 'web' } },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'web', image, env, ports: [{ containerPort: 80 }] }, { name: 'log', image: 'localhost/busybox:latest', command: ['sleep', '1d'] }] },
      },
    },
  });
}

describe('kubectl writes through PATCH', { skip: existsSync(KUBECTL) ? false : `${KUBECTL} is not installed` }, () => {
  before(async () => {
    k = await startKubectlCluster({ nodes: [] });
    dir = k.dir;
  });
  after(async () => {
    await k?.stop();
  });

  it('client-side apply twice: the second is a strategic merge patch that changes the image and removes a dropped env var', async () => {
    await writeFile(join(dir, 'web.yaml'), manifest('localhost/nginx:1', [{ name: 'A', value: '1' }, { name: 'B', value: '2' }]));
    assert.match(await ok('apply', '-f', join(dir, 'web.yaml')), /deployment.apps\/web created/);
    await writeFile(join(dir, 'web.yaml'), manifest('localhost/nginx:2', [{ name: 'B', value: '2' }, { name: 'C', value: '3' }]));
    assert.match(await ok('apply', '-f', join(dir, 'web.yaml')), /deployment.apps\/web configured/);
    const d = await deployment();
    const web = d.spec.template.spec.containers.find((c: { name: string }) => c.name === 'web');
    assert.equal(web.image, 'localhost/nginx:2');
    assert.deepEqual(web.env, [{ name: 'B', value: '2' }, { name: 'C', value: '3' }]);
    assert.deepEqual(d.spec.template.spec.containers.map((c: { name: string }) => c.name), ['web', 'log']);
    assert.match(d.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'], /localhost\/nginx:2/);
  });

  it('kubectl patch --type strategic: a container by name, an env var deleted with $patch: delete', async () => {
    await ok('patch', 'deployment', 'web', '--type', 'strategic', '-p', JSON.stringify({ spec: { template: { spec: { containers: [{ name: 'log', image: 'localhost/busybox:2' }, { name: 'web', env: [{ name: 'B', $patch: 'delete' }] }] } } } }));
    const cs = (await deployment()).spec.template.spec.containers;
    assert.equal(cs.find((c: { name: string }) => c.name === 'log').image, 'localhost/busybox:2');
    // Kubernetes' order for a patch without $setElementOrder: the patch's elements first, in its order.
    assert.deepEqual(cs.map((c: { name: string }) => c.name), ['log', 'web']);
    assert.deepEqual(cs.find((c: { name: string }) => c.name === 'web').env, [{ name: 'C', value: '3' }]);
  });

  it('kubectl edit: the edited object goes back as a strategic merge patch of what changed', async () => {
    // The editor is a sed script: kubectl runs KUBE_EDITOR with the temporary file as last argument.
    const r = await k.kubectl(['edit', 'deployment', 'web'], { env: { KUBE_EDITOR: 'sed -i s#localhost/busybox:2#localhost/busybox:3#' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deployment.apps\/web edited/);
    const cs = (await deployment()).spec.template.spec.containers;
    assert.equal(cs.find((c: { name: string }) => c.name === 'log').image, 'localhost/busybox:3');
    assert.equal(cs.find((c: { name: string }) => c.name === 'web').image, 'localhost/nginx:2');
  });

  it('kubectl patch --type merge and --type json; kubectl label and annotate', async () => {
    await ok('patch', 'deployment', 'web', '--type', 'merge', '-p', '{"spec":{"minReadySeconds":5}}');
    await ok('patch', 'deployment', 'web', '--type', 'json', '-p', '[{"op":"add","path":"/metadata/labels/stage","value":"test"}]');
    await ok('label', 'deployment', 'web', 'tier=front');
    await ok('annotate', 'deployment', 'web', 'note=hello');
    const d = await deployment();
    assert.equal(d.spec.minReadySeconds, 5);
    assert.deepEqual(d.metadata.labels, { app: 'web', stage: 'test', tier: 'front' });
    assert.equal(d.metadata.annotations.note, 'hello');
    await ok('label', 'deployment', 'web', 'tier-');
    assert.equal((await deployment()).metadata.labels.tier, undefined);
  });

  it('a failing JSON patch (test op) and a renaming patch exit 1 naming the cause; nothing is stored', async () => {
    const before = await deployment();
    const t = await kubectl('patch', 'deployment', 'web', '--type', 'json', '-p', '[{"op":"replace","path":"/spec/replicas","value":7},{"op":"test","path":"/spec/replicas","value":99}]');
    assert.equal(t.code, 1);
    assert.match(t.stderr, /op 1 \(test \/spec\/replicas\): test failed/);
    const n = await kubectl('patch', 'deployment', 'web', '--type', 'merge', '-p', '{"metadata":{"name":"other"}}');
    assert.equal(n.code, 1);
    assert.match(n.stderr, /metadata\.name/);
    const m = await kubectl('patch', 'deployment', 'web', '--type', 'strategic', '-p', '{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}');
    assert.equal(m.code, 1);
    assert.match(m.stderr, /merge key "name"/);
    const after = await deployment();
    assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
    assert.equal(after.spec.replicas, 2);
  });

  it('kubectl scale (merge patch on /scale) and kubectl get --subresource=scale', async () => {
    assert.match(await ok('scale', 'deployment', 'web', '--replicas', '4'), /deployment.apps\/web scaled/);
    assert.equal((await deployment()).spec.replicas, 4);
    const scale = JSON.parse(await ok('get', 'deployment', 'web', '--subresource=scale', '-o', 'json'));
    assert.equal(scale.kind, 'Scale');
    assert.equal(scale.spec.replicas, 4);
    assert.equal(scale.status.selector, 'app=web');
  });

  it('kubectl rollout restart (strategic: a template annotation) and rollout undo (JSON patch of the template)', async () => {
    assert.match(await ok('rollout', 'restart', 'deployment', 'web'), /restarted/);
    const d = await deployment();
    assert.ok(d.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt']);
    const image = (o: any) => o.spec.template.spec.containers.find((c: { name: string }) => c.name === 'web').image;
    assert.equal(image(d), 'localhost/nginx:2');
    // The controller made a ReplicaSet (revision) per template; undo puts the previous template back.
    await ok('set', 'image', 'deployment/web', 'web=localhost/nginx:3');
    assert.equal(image(await deployment()), 'localhost/nginx:3');
    // kubectl picks the revision to go back to among the ReplicaSets: wait until the controller made the
    // one of the restarted template and the one of nginx:3.
    await waitFor('ReplicaSets of both templates', async () => {
      const rs = (await k.t.api('GET', '/apis/apps/v1/namespaces/default/replicasets')).body?.items ?? [];
      const has = (img: string, restarted: boolean) => rs.some((x: any) => image(x) === img && Boolean(x.spec.template.metadata?.annotations?.['kubectl.kubernetes.io/restartedAt']) === restarted);
      return has('localhost/nginx:2', true) && has('localhost/nginx:3', true);
    });
    assert.match(await ok('rollout', 'undo', 'deployment', 'web'), /rolled back/);
    const undone = await deployment();
    assert.equal(image(undone), 'localhost/nginx:2');
    assert.ok(undone.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt']);
  });
});
