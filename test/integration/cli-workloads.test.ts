/**
 * The workload verbs end to end: the `drover` program (in process; `get -w` and `logs -f` as the real
 * binary in a child process) against a real
 * server with two agents on a fake container runtime (the real-podman rollout is tested in
 * rollout-podman.test.ts). Deployments roll out, change image, roll back, scale; nodes are
 * cordoned and drained; `get -w` and `logs -f` stream.
 */
import assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { drover, fails, ok, rows, spawnDrover, type Run } from '../helpers/cli.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

/** A long-running drover (get -w, logs -f) whose output is read while it runs. */
class Streaming {
  stdout = '';
  stderr = '';
  code: number | null | undefined;
  private readonly closed: Promise<void>;
  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.stdin.end();
    this.closed = new Promise((resolve) =>
      child.on('close', (code) => {
        this.code = code;
        resolve();
      }),
    );
  }
  async until(what: string, pred: (out: string) => boolean, timeoutMs = 20_000): Promise<void> {
    await waitFor(`${what} (stdout so far: ${JSON.stringify(this.stdout)}, stderr: ${JSON.stringify(this.stderr)})`, async () => pred(this.stdout), timeoutMs);
  }
  async exit(timeoutMs = 15_000): Promise<number | null> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.closed;
    clearTimeout(timer);
    return this.code ?? null;
  }
  async interrupt(): Promise<number | null> {
    this.child.kill('SIGINT');
    return this.exit();
  }
}

const DEPLOYMENT = (name: string, replicas: number, extra = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: ${name}}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
${extra}  template:
    metadata: {labels: {app: ${name}}}
    spec:
      containers:
      - name: ${name}
        image: docker.io/library/busybox:1.36
        command: ["sleep", "3600"]
`;

interface PodLite {
  metadata: { name: string; labels?: Record<string, string>; ownerReferences?: Array<{ kind: string }>; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: Array<{ image: string }> };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

describe('drover CLI workload verbs (fake runtime, two nodes)', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const run = (...args: string[]) => drover(env, args);
  const apply = (manifest: string) => drover(env, ['apply', '-f', '-'], manifest);

  const pods = async (selector: string): Promise<PodLite[]> =>
    ((await t.api('GET', `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`)).body?.items ?? []) as PodLite[];
  const readyPods = async (selector: string): Promise<PodLite[]> =>
    (await pods(selector)).filter((p) => p.status?.phase === 'Running' && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-a', runtime: new FakeRuntime({ growingLogs: true }), heartbeatSeconds: 1, resyncSeconds: 1 });
    await t.addAgent({ node: 'edge-b', runtime: new FakeRuntime({ growingLogs: true }), heartbeatSeconds: 1, resyncSeconds: 1 });
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
    for (const n of ['edge-a', 'edge-b']) {
      await waitFor(`node ${n} Ready`, async () => {
        const r = await t.api('GET', `/api/v1/nodes/${n}`);
        return r.body?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
      });
    }
  });
  after(async () => {
    await t?.stop();
  });

  it('rollout status waits for a new Deployment, then reports it rolled out', async () => {
    assert.equal(ok(await apply(DEPLOYMENT('web', 2))).stdout, 'deployment.apps/web created\n');
    const r = ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.at(-1), 'deployment "web" successfully rolled out');
    for (const l of lines.slice(0, -1)) assert.match(l, /^Waiting for deployment "web" rollout to finish: |^Waiting for deployment spec update to be observed\.\.\.$/);
    assert.equal((await readyPods('app=web')).length, 2);
    // Already complete: one line, also with -w=false.
    assert.equal(ok(await run('rollout', 'status', 'deploy', 'web', '-w=false')).stdout, 'deployment "web" successfully rolled out\n');
    fails(await run('rollout', 'status', 'deployment/nope'), /^error: deployments\.apps "nope" not found$/);
    fails(await run('rollout', 'status', 'pod/web'), /rollout status is not supported for pods/);
  });

  it('set image makes a new revision; history lists both; --revision shows the template', async () => {
    assert.equal(ok(await run('set', 'image', 'deployment/web', 'web=docker.io/library/busybox:1.37')).stdout, 'deployment.apps/web image updated\n');
    fails(await run('set', 'image', 'deployment/web', 'sidecar=busybox'), /^error: unable to find container named "sidecar"$/);
    ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    const images = (await readyPods('app=web')).map((p) => p.spec.containers[0]!.image);
    assert.deepEqual(images, ['docker.io/library/busybox:1.37', 'docker.io/library/busybox:1.37']);

    assert.equal(ok(await run('annotate', 'deployment/web', 'kubernetes.io/change-cause=busybox 1.37')).stdout, 'deployment.apps/web annotated\n');
    fails(await run('annotate', 'deployment/web', 'kubernetes.io/change-cause=other'), /'kubernetes\.io\/change-cause' already has a value \(busybox 1\.37\), and --overwrite is false/);
    const h = ok(await run('rollout', 'history', 'deployment/web')).stdout;
    const [title, ...table] = h.trimEnd().split('\n');
    assert.equal(title, 'deployment.apps/web');
    assert.deepEqual(rows(table.join('\n')), [['REVISION', 'CHANGE-CAUSE'], ['1', '<none>'], ['2', 'busybox 1.37']]);
    ok(await run('annotate', 'deployment/web', 'kubernetes.io/change-cause-'));
    const rev1 = ok(await run('rollout', 'history', 'deployment/web', '--revision', '1')).stdout;
    assert.match(rev1, /^deployment\.apps\/web with revision #1\nPod Template:\n/);
    assert.match(rev1, /Image: +docker\.io\/library\/busybox:1\.36$/m);
    fails(await run('rollout', 'history', 'deployment/web', '--revision', '9'), /unable to find the specified revision 9/);
  });

  it('rollout undo puts the previous template back (a new revision); --to-revision too', async () => {
    assert.equal(ok(await run('rollout', 'undo', 'deployment/web')).stdout, 'deployment.apps/web rolled back\n');
    const d = (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
    assert.equal(d.spec.template.spec.containers[0].image, 'docker.io/library/busybox:1.36');
    assert.equal(d.spec.template.metadata.labels['pod-template-hash'], undefined);
    ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    await waitFor('revision 3 in history', async () => {
      const h = ok(await run('rollout', 'history', 'deployment/web')).stdout;
      return rows(h.trimEnd().split('\n').slice(1).join('\n')).slice(1).map((r) => r[0]).join(',') === '2,3';
    });
    // Revision 2 is the 1.37 template: undoing to it, then to the revision we are on, which is skipped.
    assert.equal(ok(await run('rollout', 'undo', 'deployment/web', '--to-revision', '2')).stdout, 'deployment.apps/web rolled back\n');
    ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    await waitFor('revision 4', async () => (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body?.metadata?.annotations?.['deployment.kubernetes.io/revision'] === '4');
    assert.match(ok(await run('rollout', 'undo', 'deployment/web', '--to-revision', '4')).stdout, /^deployment\.apps\/web skipped rollback \(current template already matches revision 4\)\n$/);
    fails(await run('rollout', 'undo', 'deployment/web', '--to-revision', '1'), /unable to find specified revision 1 in history/);
  });

  it('scale --replicas 3 → 3 pods; --current-replicas is a precondition', async () => {
    assert.equal(ok(await run('scale', 'deployment/web', '--replicas', '3')).stdout, 'deployment.apps/web scaled\n');
    await waitFor('3 ready web pods', async () => (await readyPods('app=web')).length === 3, 30_000);
    ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    assert.deepEqual(rows(ok(await run('get', 'deploy', 'web')).stdout)[1]!.slice(0, 2), ['web', '3/3']);
    const all = ok(await run('get', 'all')).stdout;
    assert.match(all, /^NAME +READY +STATUS +RESTARTS +AGE\n(pod\/web-\S+ +1\/1 +Running .*\n){3}\n/);
    assert.match(all, /^deployment\.apps\/web +3\/3 +3 +3 /m);
    assert.match(all, /^replicaset\.apps\/web-\S+ +3 +3 +3 /m);
    fails(await run('scale', 'deploy', 'web', '--replicas', '2', '--current-replicas', '5'), /expected replicas to be 5, was 3/);
    fails(await run('scale', 'deployment/web'), /required flag\(s\) "replicas" not set/);
    fails(await run('scale', 'node/edge-a', '--replicas', '1'), /scale is not supported for nodes/);
  });

  it('rollout pause, resume and restart', async () => {
    assert.equal(ok(await run('rollout', 'pause', 'deployment/web')).stdout, 'deployment.apps/web paused\n');
    assert.equal(ok(await run('rollout', 'pause', 'deployment/web')).stdout, 'deployment.apps/web already paused\n');
    fails(await run('rollout', 'undo', 'deployment/web'), /you cannot rollback a paused deployment/);
    fails(await run('rollout', 'restart', 'deployment/web'), /can't restart paused deployment/);
    assert.equal(ok(await run('rollout', 'resume', 'deployment/web')).stdout, 'deployment.apps/web resumed\n');
    fails(await run('rollout', 'resume', 'deployment/web'), /^error: deployments\.apps "web" is not paused$/);
    const before = new Set((await pods('app=web')).map((p) => p.metadata.name));
    assert.equal(ok(await run('rollout', 'restart', 'deployment/web')).stdout, 'deployment.apps/web restarted\n');
    const d = (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
    assert.ok(!Number.isNaN(Date.parse(d.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt'])));
    ok(await run('rollout', 'status', 'deployment/web', '--timeout', '60s'));
    await waitFor('all web pods replaced', async () => {
      const now = await readyPods('app=web');
      return now.length === 3 && now.every((p) => !before.has(p.metadata.name));
    }, 30_000);
  });

  it('rollout status fails once the progress deadline is exceeded; --timeout; -w=false', async () => {
    ok(await apply(DEPLOYMENT('stuck', 1, '  progressDeadlineSeconds: 2\n').replace('    spec:\n', '    spec:\n      nodeSelector: {nowhere: "true"}\n')));
    fails(await run('rollout', 'status', 'deployment/stuck', '--timeout', '60s'), /^error: deployment "stuck" exceeded its progress deadline$/);
    ok(await apply(DEPLOYMENT('slow', 1).replace('    spec:\n', '    spec:\n      nodeSelector: {nowhere: "true"}\n')));
    const r = fails(await run('rollout', 'status', 'deployment/slow', '--timeout', '3s'), /^error: timed out waiting for the condition$/);
    assert.match(r.stdout, /^Waiting for deployment "slow" rollout to finish: 0 (out of 1 new replicas have been updated|of 1 updated replicas are available)\.\.\.$/m);
    const once = ok(await run('rollout', 'status', 'deployment/slow', '-w=false'));
    assert.match(once.stdout, /^Waiting for deployment "slow" rollout to finish/);
    assert.equal(once.stdout.trimEnd().split('\n').length, 1);
    ok(await run('delete', 'deployment', 'stuck', 'slow'));
  });

  it('cordon and uncordon', async () => {
    assert.equal(ok(await run('cordon', 'edge-a')).stdout, 'node/edge-a cordoned\n');
    assert.equal(ok(await run('cordon', 'node/edge-a')).stdout, 'node/edge-a already cordoned\n');
    const row = rows(ok(await run('get', 'nodes')).stdout).find((r) => r[0] === 'edge-a');
    // A heartbeat late on a loaded machine adds Stale; what matters here is SchedulingDisabled.
    assert.match(row?.[1] ?? '', /^Ready(,Stale)?,SchedulingDisabled$/);
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-a')).body.spec.unschedulable, true);
    assert.equal(ok(await run('uncordon', 'edge-a')).stdout, 'node/edge-a uncordoned\n');
    assert.equal(ok(await run('uncordon', 'edge-a')).stdout, 'node/edge-a already uncordoned\n');
    assert.notEqual((await t.api('GET', '/api/v1/nodes/edge-a')).body.spec.unschedulable, true);
    fails(await run('cordon', 'edge-z'), /^error: nodes "edge-z" not found$/);
  });

  it('drain refuses unmanaged and DaemonSet pods without flags; --ignore-daemonsets --force empties the node', async () => {
    ok(
      await apply(`apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec:
      containers:
      - {name: agentd, image: docker.io/library/busybox:1.36, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: loner, labels: {app: loner}}
spec:
  nodeName: edge-a
  containers:
  - {name: loner, image: docker.io/library/busybox:1.36}
`),
    );
    await waitFor('daemon pods on both nodes', async () => new Set((await readyPods('app=agentd')).map((p) => p.spec.nodeName)).size === 2, 30_000);
    await waitFor('web pods on edge-a', async () => (await readyPods('app=web')).some((p) => p.spec.nodeName === 'edge-a'), 30_000);

    let r = fails(await run('drain', 'edge-a'), /^error: unable to drain node "edge-a" due to error: /);
    assert.match(r.stderr, /cannot delete Pods that declare no controller \(use --force to override\): default\/loner/);
    assert.match(r.stderr, /cannot delete DaemonSet-managed Pods \(use --ignore-daemonsets to ignore\): default\/agentd-/);
    assert.equal(r.stdout, 'node/edge-a cordoned\n');
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-a')).body.spec.unschedulable, true);

    const onA = (await pods('app')).filter((p) => p.spec.nodeName === 'edge-a');
    r = ok(await run('drain', 'edge-a', '--ignore-daemonsets', '--force', '--timeout', '60s'));
    const out = r.stdout.trimEnd().split('\n');
    assert.equal(out[0], 'node/edge-a already cordoned');
    assert.equal(out.at(-1), 'node/edge-a drained');
    const evicted = out.slice(1, -1).sort();
    const expected = onA.filter((p) => !p.metadata.name.startsWith('agentd-')).map((p) => `pod/${p.metadata.name} evicted`).sort();
    assert.deepEqual(evicted, expected);
    assert.match(r.stderr, /^Warning: ignoring DaemonSet-managed Pods: default\/agentd-/m);
    assert.match(r.stderr, /^Warning: deleting Pods that declare no controller: default\/loner$/m);

    const left = (await pods('app')).filter((p) => p.spec.nodeName === 'edge-a');
    assert.deepEqual(left.map((p) => p.metadata.labels?.app), ['agentd']);
    // The Deployment's pods came back on the other node.
    await waitFor('3 web pods ready on edge-b', async () => {
      const web = await readyPods('app=web');
      return web.length === 3 && web.every((p) => p.spec.nodeName === 'edge-b');
    }, 30_000);
    ok(await run('uncordon', 'edge-a'));
  });

  it('get pods -w prints the header once, then a row per change', async () => {
    // Both nodes cordoned: the pod waits Pending however long the watcher (a child process) takes to
    // start on a loaded machine, so its first row is Pending whether it came from the list or the watch.
    ok(await run('cordon', 'edge-a', 'edge-b'));
    let w: Streaming | undefined;
    try {
      ok(await apply('apiVersion: v1\nkind: Pod\nmetadata: {name: watchme, labels: {app: watchme}}\nspec:\n  containers:\n  - {name: c, image: docker.io/library/busybox:1.36}\n'));
      w = new Streaming(spawnDrover(env, ['get', 'pods', '-l', 'app=watchme', '-w']));
      await w.until('a Pending row', (out) => /^watchme +0\/1 +Pending /m.test(out), 30_000);
    } finally {
      ok(await run('uncordon', 'edge-a', 'edge-b'));
    }
    try {
      await w.until('a Running row', (out) => /^watchme +1\/1 +Running /m.test(out), 30_000);
      // Counted from the delete: a watch that started late (a loaded machine) saw fewer rows before it.
      const before = w.stdout.trimEnd().split('\n').length;
      ok(await run('delete', 'pod', 'watchme'));
      await w.until('the row of the deletion', (out) => out.trimEnd().split('\n').length > before);
    } finally {
      assert.equal(await w.interrupt(), 0, `stderr: ${w.stderr}`);
    }
    const lines = w.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME +READY +STATUS +RESTARTS +AGE$/);
    assert.equal(lines.filter((l) => l.startsWith('NAME')).length, 1);
    assert.ok(lines.slice(1).every((l) => l.startsWith('watchme ')), w.stdout);
    assert.match(lines[1]!, /^watchme +0\/1 +Pending /);
    // Rows line up under the header.
    const col = lines[0]!.indexOf('STATUS');
    for (const l of lines.slice(1)) assert.equal(l.slice(col - 3, col), '   ', l);

    // -o name with a name: the existing object first, then its changes.
    const byName = new Streaming(spawnDrover(env, ['get', 'deployment', 'web', '-w', '-o', 'name']));
    await byName.until('the first name', (out) => out === 'deployment.apps/web\n');
    assert.equal(await byName.interrupt(), 0);
    fails(await run('get', 'pod', 'nope', '-w'), /^error: pods "nope" not found$/);
  });

  it('logs -f prints new lines once each and ends when the pod is deleted; --tail', async () => {
    ok(await apply('apiVersion: v1\nkind: Pod\nmetadata: {name: chatty, labels: {app: chatty}}\nspec:\n  containers:\n  - {name: c, image: docker.io/library/busybox:1.36}\n'));
    await waitFor('chatty ready', async () => (await readyPods('app=chatty')).length === 1, 30_000);
    const f = new Streaming(spawnDrover(env, ['logs', '-f', 'chatty', '--tail', '2']));
    await f.until('several followed lines', (out) => out.split('\n').length > 8, 20_000);
    ok(await run('delete', 'pod', 'chatty'));
    assert.equal(await f.exit(), 0, f.stderr);
    const lines = f.stdout.trimEnd().split('\n');
    const nums = lines.map((l) => Number(/^line (\d+)$/.exec(l)?.[1]));
    assert.ok(nums.every(Number.isInteger), f.stdout);
    // Consecutive: nothing repeated, nothing skipped; --tail 2 started near the end.
    for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1]! + 1, f.stdout);
    fails(await run('logs', '-f', 'chatty'), /^error: pods "chatty" not found$/);
  });

  it('delete -l and --all', async () => {
    const web = (await pods('app=web')).map((p) => p.metadata.name).sort();
    const r = ok(await run('delete', 'pods', '-l', 'app=web'));
    assert.deepEqual(r.stdout.trimEnd().split('\n').sort(), web.map((n) => `pod "${n}" deleted`));
    const none = ok(await run('delete', 'pods', '-l', 'app=nothing'));
    assert.equal(none.stdout, '');
    assert.equal(none.stderr, 'No resources found in default namespace.\n');
    fails(await run('delete', 'pods', 'x', '-l', 'app=web'), /name cannot be provided when a selector or --all is specified/);
    assert.equal(ok(await run('delete', 'deployments', '--all')).stdout, 'deployment.apps "web" deleted\n');
    assert.equal(ok(await run('delete', 'ds', '--all')).stdout, 'daemonset.apps "agentd" deleted\n');
  });

  /** Runs until it exits 0 (metrics come with the agents' next heartbeats). */
  const waitForOk = (fn: () => Promise<Run>, timeoutMs = 20_000): Promise<Run> => {
    let last: Run | undefined;
    return waitFor(`command to succeed (last: ${JSON.stringify(last)})`, async () => {
      last = await fn();
      return last.code === 0 ? last : undefined;
    }, timeoutMs, 300);
  };

  it('top nodes and pods: the use the agents measured (fake runtime burns 250m per container)', async () => {
    const nodes = rows(ok(await waitForOk(() => run('top', 'nodes'))).stdout);
    assert.deepEqual(nodes[0], ['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%']);
    assert.deepEqual(nodes.slice(1).map((r) => r[0]).sort(), ['edge-a', 'edge-b']);
    for (const r of nodes.slice(1)) assert.match(`${r[1]} ${r[3]}`, /^\d+m? \d+Mi$/, r.join(' '));
    // No pods here yet: kubectl's message, not an error.
    const empty = ok(await run('top', 'pods', '-n', 'kube-public'));
    assert.equal(empty.stderr, 'No resources found in kube-public namespace.\n');
    ok(await apply(DEPLOYMENT('burner', 2)));
    // A CPU rate needs two samples a heartbeat apart.
    const table = await waitForOk(async () => {
      const r = await run('top', 'pods', '-l', 'app=burner');
      const t = rows(r.stdout);
      return r.code === 0 && t.length === 3 && t.slice(1).every((x) => parseInt(x[1] ?? '0', 10) > 0) ? r : { ...r, code: 1 };
    });
    for (const r of rows(table.stdout).slice(1)) {
      assert.match(r[0]!, /^burner-/);
      assert.ok(Math.abs(Number(r[1]!.replace(/m$/, '')) - 250) <= 30, `about 250m: ${r.join(' ')}`);
      assert.equal(r[2], '8Mi');
    }
    ok(await run('delete', 'deployment', 'burner'));
  });

  it('api-resources and completion', async () => {
    const table = rows(ok(await run('api-resources')).stdout);
    assert.deepEqual(table[0], ['NAME', 'SHORTNAMES', 'APIVERSION', 'NAMESPACED', 'KIND']);
    assert.ok(table.some((r) => r.join(' ') === 'deployments deploy apps/v1 true Deployment'));
    assert.match(ok(await run('api-resources', '--namespaced', 'false', '-o', 'name')).stdout, /^namespaces\nnodes\n$/);
    const script = ok(await run('completion', 'bash')).stdout;
    assert.match(script, /complete -F _drover drover/);
    fails(await run('completion', 'fish'), /unsupported shell type "fish"/);
    // The Deployment's yaml round-trips through get -o yaml (sanity of the objects the verbs wrote).
    assert.equal(parseYaml(ok(await run('get', 'ns', 'default', '-o', 'yaml')).stdout).kind, 'Namespace');
  });
});
