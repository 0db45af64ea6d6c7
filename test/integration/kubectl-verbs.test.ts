/**
 * The real kubectl (/usr/bin/kubectl, v1.32) against a drover server over TLS, with the kubeconfig
 * `drover kubeconfig` writes (server, CA as certificate-authority-data, token): discovery, get (drover's
 * columns), get -o json|yaml, apply (create, configured, unchanged), edit, patch (merge, json, strategic),
 * scale, rollout status|history|undo|restart, get -w, explain, top, logs, delete; immutable pod fields
 * and a view token refused. One agent on a fake runtime runs the pods. kubectl exec/attach/port-forward
 * (SPDY/websocket streams) are not served by drover and not tested.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { KINDS } from '../../src/api/kinds.js';
import { drover, ok, rows } from '../helpers/cli.js';
import { waitFor, type TestServer } from '../helpers/cluster.js';
import { KUBECTL, startKubectlCluster, type KubectlCluster, type KubectlOptions, type KubectlRun } from '../helpers/kubectl.js';

const DEPLOYMENT = (replicas: number, image = 'localhost/busybox:1') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ${image}
        command: ["sleep", "3600"]
        env: [{name: A, value: "1"}]
      - name: side
        image: localhost/busybox:1
        command: ["sleep", "3600"]
`;

const POD = (command: string) => `apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  containers:
  - name: c
    image: localhost/busybox:1
    command: ["sh", "-c", "${command}"]
`;

describe('the real kubectl against drover (TLS, kubeconfig from drover kubeconfig)', () => {
  let c: KubectlCluster;
  let t: TestServer;
  let dir: string;
  let env: Record<string, string>;
  let droverEnv: Record<string, string>;
  const kubectl = (args: string[], opts?: KubectlOptions): Promise<KubectlRun> => c.kubectl(args, opts);
  const good = (args: string[], opts?: KubectlOptions): Promise<string> => c.good(args, opts);
  const json = (args: string[]) => c.json(args);

  before(async () => {
    c = await startKubectlCluster();
    ({ t, dir, env, droverEnv } = c);
  });
  after(async () => {
    await c?.stop();
  });

  it('the kubeconfig drover writes is private and kubectl trusts the server with it (version)', async () => {
    assert.equal((await stat(join(dir, 'kubeconfig'))).mode & 0o777, 0o600);
    const cfg = parseYaml(await readFile(join(dir, 'kubeconfig'), 'utf8')) as { clusters: Array<{ cluster: Record<string, string> }> };
    assert.equal(Buffer.from(cfg.clusters[0]!.cluster['certificate-authority-data']!, 'base64').toString(), t.ca);
    assert.equal(cfg.clusters[0]!.cluster['insecure-skip-tls-verify'], undefined);
    const v = await kubectl(['version']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^Server Version: v1\.32\.0\+drover-\d+\.\d+\.\d+/m);
    // drover answers at the API level it was tested with, so kubectl sees no version skew to warn about.
    assert.doesNotMatch(v.stderr, /version difference/i);
  });

  it('api-resources lists every drover kind with its short names, api-versions every group', async () => {
    const table = rows(await good(['api-resources', '--no-headers=false']));
    const header = table[0]!;
    assert.deepEqual(header, ['NAME', 'SHORTNAMES', 'APIVERSION', 'NAMESPACED', 'KIND']);
    for (const k of KINDS) {
      const row = table.find((r) => r[0] === k.plural && r.includes(k.groupVersion));
      assert.ok(row, `kubectl api-resources lacks ${k.plural} (${k.groupVersion})`);
      if (k.shortNames.length) assert.equal(row[1], k.shortNames.join(','));
      assert.ok(row.includes(k.kind));
    }
    const versions = (await good(['api-versions'])).trim().split('\n');
    for (const gv of new Set(KINDS.map((k) => k.groupVersion))) assert.ok(versions.includes(gv), `api-versions lacks ${gv}`);
    assert.ok(versions.includes('metrics.k8s.io/v1beta1'));
  });

  it('apply creates, then says configured for a change and unchanged for none; get prints drover\'s columns', async () => {
    assert.equal(await good(['apply', '-f', '-'], { input: DEPLOYMENT(2) }), 'deployment.apps/web created\n');
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
    assert.equal(await good(['apply', '-f', '-'], { input: DEPLOYMENT(3) }), 'deployment.apps/web configured\n');
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, 3);
    assert.equal(await good(['apply', '-f', '-'], { input: DEPLOYMENT(3) }), 'deployment.apps/web unchanged\n');
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
    // The same table as drover's own get (the AGE column may tick between the two calls).
    for (const what of [['deployments'], ['pods', '-o', 'wide'], ['nodes'], ['replicasets']]) {
      const theirs = rows(await good(['get', ...what]));
      const ours = rows(ok(await drover(droverEnv, ['get', ...what])).stdout);
      assert.deepEqual(theirs[0], ours[0], `headers of get ${what.join(' ')}`);
      const age = ours[0]!.indexOf('AGE');
      const noAge = (r: string[][]) => r.map((cells) => cells.filter((_, i) => i !== age)).sort();
      assert.deepEqual(noAge(theirs), noAge(ours), `rows of get ${what.join(' ')}`);
    }
  });

  it('get -o json and -o yaml give the stored objects; a list carries its resourceVersion', async () => {
    const list = await json(['get', 'pods', '-l', 'app=web']);
    assert.equal(list.items.length, 3);
    const api = (await t.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb')).body;
    assert.deepEqual(list.items.map((p: any) => p.metadata.name).sort(), api.items.map((p: any) => p.metadata.name).sort());
    const one = parseYaml(await good(['get', 'deployment', 'web', '-o', 'yaml']));
    assert.equal(one.kind, 'Deployment');
    assert.equal(one.metadata.uid, (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body.metadata.uid);
    // kubectl reads container states as Kubernetes' objects (describe and logs decode them).
    assert.ok(list.items[0].status.containerStatuses[0].state.running, JSON.stringify(list.items[0].status.containerStatuses[0]));
  });

  it('patch: strategic merges containers by name, merge and json patch change what they name', async () => {
    assert.match(await good(['patch', 'deployment', 'web', '-p', '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}']), /patched/);
    let d = await json(['get', 'deployment', 'web']);
    const containers = d.spec.template.spec.containers;
    assert.deepEqual(containers.map((c: any) => c.name), ['web', 'side'], 'the other container is kept');
    assert.deepEqual(containers[0].env.map((e: any) => e.name).sort(), ['A', 'B']);
    assert.equal(containers[0].image, 'localhost/busybox:1');
    await good(['patch', 'deployment', 'web', '--type=merge', '-p', '{"metadata":{"labels":{"tier":"front"}}}']);
    await good(['patch', 'deployment', 'web', '--type=json', '-p', '[{"op":"replace","path":"/spec/replicas","value":2}]']);
    d = await json(['get', 'deployment', 'web']);
    assert.equal(d.metadata.labels.tier, 'front');
    assert.equal(d.spec.replicas, 2);
    const bad = await kubectl(['patch', 'deployment', 'web', '--type=json', '-p', '[{"op":"test","path":"/spec/replicas","value":99}]']);
    assert.notEqual(bad.code, 0);
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, 2, 'a failed patch changes nothing');
  });

  it('edit applies what the editor saved', async () => {
    const editor = join(dir, 'editor.sh');
    await writeFile(editor, '#!/bin/sh\nsed -i "s/replicas: 2/replicas: 1/" "$1"\n');
    await chmod(editor, 0o700);
    assert.match(await good(['edit', 'deployment/web'], { env: { EDITOR: editor } }), /deployment.apps\/web edited/);
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, 1);
  });

  it('scale goes through the Scale subresource', async () => {
    assert.equal(await good(['scale', 'deployment/web', '--replicas=3']), 'deployment.apps/web scaled\n');
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, 3);
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
    const refused = await kubectl(['scale', 'deployment/web', '--replicas=3', '--current-replicas=7']);
    assert.notEqual(refused.code, 0, 'a precondition that does not hold');
  });

  it('rollout: set image, status, history, undo, restart', async () => {
    await good(['set', 'image', 'deployment/web', 'web=localhost/busybox:2']);
    assert.match(await good(['rollout', 'status', 'deployment/web', '--timeout=60s']), /successfully rolled out/);
    const history = await good(['rollout', 'history', 'deployment/web']);
    assert.match(history, /REVISION\s+CHANGE-CAUSE/);
    assert.ok(history.trim().split('\n').length >= 4, history);
    assert.match(await good(['rollout', 'undo', 'deployment/web']), /rolled back/);
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
    assert.equal((await json(['get', 'deployment', 'web'])).spec.template.spec.containers[0].image, 'localhost/busybox:1');
    assert.match(await good(['rollout', 'restart', 'deployment/web']), /restarted/);
    const restarted = await json(['get', 'deployment', 'web']);
    assert.ok(restarted.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt']);
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
  });

  it('apply --server-side creates, takes its own fields, and names a conflict with another manager unless forced', async () => {
    const ssa = (replicas: number) => DEPLOYMENT(replicas).replace('name: web\nspec', 'name: ssa\nspec').replace(/app: web/g, 'app: ssa');
    assert.equal(await good(['apply', '--server-side', '-f', '-'], { input: ssa(1) }), 'deployment.apps/ssa serverside-applied\n');
    assert.equal(await good(['apply', '--server-side', '-f', '-'], { input: ssa(2) }), 'deployment.apps/ssa serverside-applied\n');
    assert.equal((await json(['get', 'deployment', 'ssa'])).spec.replicas, 2);
    const conflict = await kubectl(['apply', '--server-side', '--field-manager=ci', '-f', '-'], { input: ssa(4) });
    assert.notEqual(conflict.code, 0);
    assert.match(conflict.stderr, /conflict/i);
    assert.match(conflict.stderr, /\.spec\.replicas/);
    assert.equal((await json(['get', 'deployment', 'ssa'])).spec.replicas, 2, 'a conflict changes nothing');
    await good(['apply', '--server-side', '--field-manager=ci', '--force-conflicts', '-f', '-'], { input: ssa(4) });
    const d = await json(['get', 'deployment', 'ssa', '--show-managed-fields']);
    assert.equal(d.spec.replicas, 4);
    assert.ok(d.metadata.managedFields.some((m: { manager: string; operation: string }) => m.manager === 'ci' && m.operation === 'Apply'));
    await good(['delete', 'deployment', 'ssa']);
  });

  it('--dry-run=server validates and answers but stores nothing (apply, patch, delete)', async () => {
    assert.equal(await good(['apply', '--dry-run=server', '-f', '-'], { input: POD('sleep 1').replace('name: solo', 'name: dry') }), 'pod/dry created (server dry run)\n');
    assert.equal((await t.api('GET', '/api/v1/namespaces/default/pods/dry')).status, 404);
    const replicas = (await json(['get', 'deployment', 'web'])).spec.replicas;
    await good(['patch', 'deployment', 'web', '--dry-run=server', '-p', '{"spec":{"replicas":9}}']);
    assert.match(await good(['delete', 'deployment', 'web', '--dry-run=server']), /deleted \(server dry run\)/);
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, replicas);
    const invalid = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: POD('sleep 1').replace('name: solo', 'name: UPPER') });
    assert.notEqual(invalid.code, 0, 'a dry run still validates');
  });

  it('fields drover ignores come back as kubectl Warning lines', async () => {
    const r = await kubectl(['apply', '-f', '-'], { input: POD('sleep 1').replace('name: solo', 'name: warned').replace('spec:\n', 'spec:\n  dnsPolicy: ClusterFirst\n') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Warning: .*dnsPolicy/m);
    await good(['delete', 'pod', 'warned']);
  });

  it('get -w prints the table, then a row for each change', async () => {
    const child = spawn(KUBECTL, ['get', 'pods', '-l', 'app=solo', '-w', '-v=6'], { env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      // -v=6 logs each request as its response starts: the watch is open once its GET is logged.
      await waitFor(`kubectl's watch open (got ${JSON.stringify(out)})`, async () => /GET \S+watch=true\S* 200 OK/.test(out), 20_000);
      await good(['apply', '-f', '-'], { input: POD('sleep 3600') });
      await waitFor(`a watch row for solo (got ${JSON.stringify(out)})`, async () => /^solo\s+0\/1\s+Pending/m.test(out) || /^solo\s+/m.test(out));
      await waitFor(`solo Running in the watch (got ${JSON.stringify(out)})`, async () => /^solo\s+1\/1\s+Running/m.test(out));
    } finally {
      child.kill('SIGINT');
    }
  });

  it('a change to an immutable pod field is refused in Kubernetes\' words, and the pod is unchanged', async () => {
    const r = await kubectl(['apply', '-f', '-'], { input: POD('sleep 7200') });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /^The Pod "solo" is invalid: spec: Forbidden: pod updates may not change fields other than/m);
    assert.deepEqual((await json(['get', 'pod', 'solo'])).spec.containers[0].command, ['sh', '-c', 'sleep 3600']);
  });

  it('logs, explain and top read what drover serves', async () => {
    assert.match(await good(['logs', 'solo']), /line 1/);
    const explain = await good(['explain', 'pod.spec.containers']);
    assert.match(explain, /^KIND:\s+Pod$/m);
    assert.match(explain, /^\s+image\s+<string>/m);
    assert.match(explain, /^\s+name\s+<string> -required-/m);
    await waitFor('node metrics', async () => (await kubectl(['top', 'nodes'])).stdout.includes('edge-a'), 30_000);
    const top = rows(await good(['top', 'nodes']));
    assert.deepEqual(top[0]!.slice(0, 3), ['NAME', 'CPU(cores)', 'CPU(%)']);
    assert.match(await good(['top', 'node', 'edge-a']), /^edge-a\s+\d+m\s/m);
    const missing = await kubectl(['top', 'node', 'nope']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /NotFound/);
  });

  it('a view token reads but may not change anything', async () => {
    const created = ok(await drover(droverEnv, ['token', 'create', '--role', 'view']));
    const token = created.stdout.trim().split('\n').at(-1)!.trim();
    const viewConfig = await c.kubeconfigFor(token, 'view-kubeconfig');
    const as = { KUBECONFIG: viewConfig };
    assert.match(await good(['get', 'deployments'], { env: as }), /^web\s/m);
    for (const args of [['scale', 'deployment/web', '--replicas=9'], ['patch', 'deployment', 'web', '-p', '{"spec":{"replicas":9}}'], ['delete', 'pod', 'solo']]) {
      const r = await kubectl(args, { env: as });
      assert.notEqual(r.code, 0, `kubectl ${args.join(' ')} as view`);
      assert.match(r.stderr, /[Ff]orbidden/);
    }
    assert.equal((await json(['get', 'deployment', 'web'])).spec.replicas, 3);
  });

  it('everyday verbs: run, label, annotate, wait, get all, describe, cordon, drain, uncordon', async () => {
    assert.equal(await good(['run', 'runner', '--image=localhost/busybox:1', '--', 'sleep', '3600']), 'pod/runner created\n');
    await good(['wait', '--for=condition=Ready', 'pod/runner', '--timeout=60s']);
    assert.equal(await good(['label', 'pod', 'runner', 'team=edge']), 'pod/runner labeled\n');
    assert.equal(await good(['annotate', 'pod', 'runner', 'note=hello']), 'pod/runner annotated\n');
    const p = await json(['get', 'pod', 'runner']);
    assert.equal(p.metadata.labels.team, 'edge');
    assert.equal(p.metadata.annotations.note, 'hello');
    const all = await good(['get', 'all']);
    assert.match(all, /^pod\/runner\s/m);
    assert.match(all, /^deployment\.apps\/web\s/m);
    const described = await good(['describe', 'pod', 'runner']);
    assert.match(described, /^Node:\s+edge-a/m);
    assert.match(described, /^\s+State:\s+Running/m);
    assert.equal(await good(['cordon', 'edge-a']), 'node/edge-a cordoned\n');
    // drain deletes pods through kubectl's typed client (protobuf DeleteOptions); --dry-run=server must delete nothing.
    await kubectl(['drain', 'edge-a', '--force', '--ignore-daemonsets', '--dry-run=server', '--timeout=5s']);
    assert.equal((await t.api('GET', '/api/v1/namespaces/default/pods/runner')).status, 200, 'a dry-run drain deleted a pod');
    assert.match(await good(['drain', 'edge-a', '--force', '--ignore-daemonsets', '--timeout=60s']), /node\/edge-a drained/);
    assert.equal((await t.api('GET', '/api/v1/namespaces/default/pods/runner')).status, 404);
    assert.equal(await good(['uncordon', 'edge-a']), 'node/edge-a uncordoned\n');
    await good(['rollout', 'status', 'deployment/web', '--timeout=60s']);
  });

  it('kubectl create KIND NAME (protobuf) is refused with a way that works, and that way works', async () => {
    const r = await kubectl(['create', 'configmap', 'cfg', '--from-literal=a=b']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not protobuf.*--dry-run=client -o yaml \| kubectl apply -f -/);
    const yaml = await good(['create', 'configmap', 'cfg', '--from-literal=a=b', '--dry-run=client', '-o', 'yaml']);
    assert.equal(await good(['apply', '-f', '-'], { input: yaml }), 'configmap/cfg created\n');
    assert.deepEqual((await json(['get', 'configmap', 'cfg'])).data, { a: 'b' });
  });

  it('delete removes the object', async () => {
    assert.equal(await good(['delete', 'configmap', 'cfg']), 'configmap "cfg" deleted\n');
    assert.equal((await t.api('GET', '/api/v1/namespaces/default/configmaps/cfg')).status, 404);
    assert.match(await good(['delete', 'deployment', 'web']), /deployment.apps "web" deleted/);
    const r = await kubectl(['get', 'deployment', 'web']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /NotFound|not found/);
  });
});
