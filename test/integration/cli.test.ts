/**
 * End to end: the `drover` program (the one src/main.ts runs, here in process on its own io; the
 * child-process binary is exercised by tls-cli.test.ts) against a real server over HTTPS. Checks exit status (0, or 1 with exactly one `error: ...` line on stderr) and output.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { drover, fails, ok, rows } from '../helpers/cli.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

let workDir: string;

const POD = (labels: string, extra = '') => `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {${labels}}
spec:
  containers:
  - name: web
    image: docker.io/library/busybox:1.36
    command: ["sh", "-c", "echo hello; sleep 3600"]
${extra}`;

describe('drover CLI against a server', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const run = (...args: string[]) => drover(env, args);

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'drover-cli-e2e-'));
    t = await startTestServer();
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
  });
  after(async () => {
    await t?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('get namespaces: table, name, json, yaml', async () => {
    const table = rows(ok(await run('get', 'namespaces')).stdout);
    assert.deepEqual(table[0], ['NAME', 'STATUS', 'AGE']);
    assert.ok(table.some((r) => r[0] === 'default' && r[1] === 'Active'));
    assert.match(ok(await run('get', 'ns', '-o', 'name')).stdout, /^namespace\/default$/m);
    const list = JSON.parse(ok(await run('get', 'ns', '-o', 'json')).stdout);
    assert.equal(list.kind, 'List');
    assert.ok(list.items.some((n: { metadata: { name: string } }) => n.metadata.name === 'default'));
    assert.equal(parseYaml(ok(await run('get', 'namespace', 'default', '-o', 'yaml')).stdout).metadata.name, 'default');
  });

  it('create namespace, and again → already exists', async () => {
    assert.equal(ok(await run('create', 'namespace', 'prod')).stdout, 'namespace/prod created\n');
    fails(await run('create', 'namespace', 'prod'), /already exists/);
    fails(await run('create', 'namespace', 'Not_Valid'), /invalid namespace name "Not_Valid"/);
  });

  it('apply a Pod: created, unchanged on re-apply, configured after a change; local warnings', async () => {
    const file = join(workDir, 'pod.yaml');
    await writeFile(file, POD('app: web', '    terminationMessagePath: /dev/termination-log\n'));
    let r = ok(await run('apply', '-f', file));
    assert.equal(r.stdout, 'pod/web created\n');
    assert.match(r.stderr, /^Warning: pod\/web: spec\.containers\[0\]\.terminationMessagePath: not supported by drover, ignored$/m);
    assert.equal(ok(await run('apply', '-f', file)).stdout, 'pod/web unchanged\n');
    await writeFile(file, POD('app: web, tier: front'));
    r = ok(await run('apply', '-f', file));
    assert.equal(r.stdout, 'pod/web configured\n');
    assert.equal(r.stderr, '');
    assert.equal(ok(await run('apply', '-f', file)).stdout, 'pod/web unchanged\n');
  });

  it('apply -f - (stdin) with several documents into another namespace', async () => {
    const manifests = `${POD('app: api').replace('name: web', 'name: api')}---\n${POD('app: worker').replace('name: web', 'name: worker')}`;
    const r = ok(await drover(env, ['apply', '-f', '-', '-n', 'prod'], manifests));
    assert.equal(r.stdout, 'pod/api created\npod/worker created\n');
  });

  it('get pods: table, wide, -A, -l, name, json, one pod as yaml', async () => {
    const table = rows(ok(await run('get', 'pods')).stdout);
    assert.deepEqual(table[0], ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
    assert.deepEqual(table.slice(1).map((r) => r.slice(0, 2)), [['web', '0/1']]);
    assert.deepEqual(rows(ok(await run('get', 'po', '-o', 'wide')).stdout)[0], ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', 'IP', 'NODE']);
    const all = rows(ok(await run('get', 'pods', '-A')).stdout);
    assert.equal(all[0]![0], 'NAMESPACE');
    assert.deepEqual(all.slice(1).map((r) => `${r[0]}/${r[1]}`).sort(), ['default/web', 'prod/api', 'prod/worker']);
    assert.equal(ok(await run('get', 'pods', '-n', 'prod', '-l', 'app=worker', '-o', 'name')).stdout, 'pod/worker\n');
    const none = ok(await run('get', 'pods', '-l', 'app=nothing'));
    assert.equal(none.stdout, '');
    assert.equal(none.stderr, 'No resources found in default namespace.\n');
    const json = JSON.parse(ok(await run('get', 'pods', '-A', '-o', 'json')).stdout);
    assert.equal(json.items.length, 3);
    const one = parseYaml(ok(await run('get', 'pod/web', '-o', 'yaml')).stdout);
    assert.equal(one.metadata.labels.tier, 'front');
    fails(await run('get', 'pod', 'nope'), /^error: pods "nope" not found$/);
  });

  it('get nodes: table, wide, name, json', async () => {
    const file = join(workDir, 'node.yaml');
    await writeFile(file, 'apiVersion: v1\nkind: Node\nmetadata:\n  name: edge-1\n  labels:\n    node-role.kubernetes.io/gateway: ""\n');
    assert.equal(ok(await run('apply', '-f', file)).stdout, 'node/edge-1 created\n');
    const table = rows(ok(await run('get', 'nodes')).stdout);
    assert.deepEqual(table[0], ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', 'ARCH', 'OS', 'CPU', 'MEMORY', 'RUNTIME']);
    const row = table.find((r) => r[0] === 'edge-1');
    assert.ok(row, `edge-1 missing from ${JSON.stringify(table)}`);
    assert.equal(row[1], 'Unknown'); // nothing has reported for it
    assert.equal(row[2], 'gateway');
    assert.deepEqual(rows(ok(await run('get', 'no', '-o', 'wide')).stdout)[0]!.slice(-4), ['OS-IMAGE', 'KERNEL-VERSION', 'INTERNAL-IP', 'LAST-HEARD']);
    assert.match(ok(await run('get', 'nodes', '-o', 'name')).stdout, /^node\/edge-1$/m);
    assert.equal(JSON.parse(ok(await run('get', 'node', 'edge-1', '-o', 'json')).stdout).kind, 'Node');
  });

  it('apply errors: malformed YAML names the line, a bad field its path, an unknown kind; nothing is sent', async () => {
    const broken = join(workDir, 'broken.yaml');
    await writeFile(broken, `${POD('app: x').replace('name: web', 'name: half')}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  labels: {app: x\nspec: {}\n`);
    fails(await run('apply', '-f', broken), /broken\.yaml: line \d+/);
    const invalid = join(workDir, 'invalid.yaml');
    await writeFile(invalid, `${POD('app: x').replace('name: web', 'name: half')}---\n${POD('app: x').replace('    image: docker.io/library/busybox:1.36\n', '')}`);
    fails(await run('apply', '-f', invalid), /"[^"]*invalid\.yaml": document 2 \(Pod "web"\): spec\.containers\[0\]\.image: required/);
    const unknown = join(workDir, 'cronjob.yaml');
    await writeFile(unknown, 'apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: web\n');
    fails(await run('apply', '-f', unknown), /unknown kind "CronJob"/);
    fails(await run('apply', '-f', join(workDir, 'missing.yaml')), /the path ".*missing\.yaml" does not exist/);
    // The valid first document of each bad file was not applied.
    fails(await run('get', 'pod', 'half'), /pods "half" not found/);
  });

  it('unknown kind and bad output format', async () => {
    fails(await run('get', 'foo'), /^error: the server doesn't have a resource type "foo"$/);
    fails(await run('get', 'pods', '-o', 'xml'), /output format "xml"/);
  });

  it('describe pod, node, namespace; missing → error', async () => {
    const pod = ok(await run('describe', 'pod', 'web')).stdout;
    assert.match(pod, /^Name: +web$/m);
    assert.match(pod, /^Namespace: +default$/m);
    assert.match(pod, /^Labels: +app=web$/m);
    assert.match(pod, /^ +tier=front$/m);
    assert.match(pod, /^Containers:\n  web:\n    Image: +docker\.io\/library\/busybox:1\.36$/m);
    assert.match(pod, /^    Command:\n      sh\n      -c\n/m);
    assert.match(pod, /^Events:/m);
    const node = ok(await run('describe', 'node', 'edge-1')).stdout;
    assert.match(node, /^Name: +edge-1$/m);
    assert.match(node, /^Roles: +gateway$/m);
    assert.match(node, /^Non-terminated Pods: +\(\d+ in total\)$/m);
    assert.match(ok(await run('describe', 'ns', 'prod')).stdout, /^Status: +Active$/m);
    fails(await run('describe', 'pod', 'missing'), /^error: pods "missing" not found$/);
  });

  it('logs of a pod no agent runs → error', async () => {
    const r = await run('logs', 'web', '--tail', '5');
    fails(r, /./);
    fails(await run('logs', 'web', '--tail', 'lots'), /invalid --tail "lots"/);
  });

  it('delete by name and with -f; missing → not found', async () => {
    assert.equal(ok(await run('delete', 'pod', 'web')).stdout, 'pod "web" deleted\n');
    fails(await run('delete', 'pod', 'web'), /^error: pods "web" not found$/);
    assert.equal(ok(await run('delete', 'pod', 'web', '--ignore-not-found')).stdout, '');
    const file = join(workDir, 'prod.yaml');
    await writeFile(file, `${POD('app: api').replace('name: web', 'name: api')}---\n${POD('app: worker').replace('name: web', 'name: worker')}`);
    assert.equal(ok(await run('delete', '-f', file, '-n', 'prod')).stdout, 'pod "api" deleted\npod "worker" deleted\n');
    assert.equal(ok(await run('delete', 'node', 'edge-1')).stdout, 'node "edge-1" deleted\n');
    assert.equal(ok(await run('delete', 'namespace', 'prod')).stdout, 'namespace "prod" deleted\n');
    const r = fails(await run('delete', 'pods', 'a', 'b'), /pods "a" not found; pods "b" not found/);
    assert.equal(r.stdout, '');
  });

  it('workloads and config in another API group: apply, get, describe, delete', async () => {
    const file = join(workDir, 'app.yaml');
    const manifests = (replicas: number) => `apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: apps}
data: {mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: pw, namespace: apps}
stringData: {password: hunter2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: docker.io/library/busybox:1.36
`;
    await writeFile(file, manifests(0));
    assert.equal(ok(await run('apply', '-f', file)).stdout, 'namespace/apps created\nconfigmap/cfg created\nsecret/pw created\ndeployment.apps/web created\n');
    assert.equal(ok(await run('apply', '-f', file)).stdout, 'namespace/apps unchanged\nconfigmap/cfg unchanged\nsecret/pw unchanged\ndeployment.apps/web unchanged\n');
    await writeFile(file, manifests(1));
    assert.match(ok(await run('apply', '-f', file)).stdout, /^deployment\.apps\/web configured$/m);
    assert.equal(ok(await run('get', 'deploy', '-n', 'apps', '-o', 'name')).stdout, 'deployment.apps/web\n');
    assert.deepEqual(rows(ok(await run('get', 'deployments', '-n', 'apps')).stdout)[0], ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']);
    assert.deepEqual(rows(ok(await run('get', 'cm', '-n', 'apps')).stdout)[1]!.slice(0, 2), ['cfg', '1']);
    const secret = ok(await run('describe', 'secret', 'pw', '-n', 'apps')).stdout;
    assert.match(secret, /^password: +7 bytes$/m);
    assert.doesNotMatch(secret, /hunter2/);
    assert.match(ok(await run('describe', 'deployment', 'web', '-n', 'apps')).stdout, /^Replicas: +1 desired/m);
    assert.equal(ok(await run('delete', 'deployment', 'web', '-n', 'apps')).stdout, 'deployment.apps "web" deleted\n');
    fails(await run('delete', 'deployment', 'web', '-n', 'apps'), /^error: deployments\.apps "web" not found$/);
    ok(await run('delete', 'ns', 'apps'));
  });

  it('server unreachable → cannot reach', async () => {
    fails(await drover({ DROVER_SERVER: 'http://127.0.0.1:1', DROVER_TOKEN: 'x' }, ['get', 'pods']), /^error: cannot reach the drover server at http:\/\/127\.0\.0\.1:1: .*set DROVER_SERVER\)$/);
  });

  it('bad token → unauthorized', async () => {
    fails(await drover({ ...env, DROVER_TOKEN: 'wrong' }, ['get', 'pods']), /^error: unauthorized: check the token \(DROVER_TOKEN or ~\/\.drover\/config\)$/);
    fails(await drover({ ...env, DROVER_TOKEN: 'wrong' }, ['apply', '-f', '-'], POD('app: web')), /^error: unauthorized/);
  });

  it('server and token from the config file', async () => {
    const cfg = join(workDir, 'config');
    await writeFile(cfg, JSON.stringify({ server: t.apiUrl, token: t.token }));
    const r = ok(await drover({ DROVER_CONFIG: cfg, DROVER_SERVER: '', DROVER_TOKEN: '' }, ['get', 'ns', 'default', '-o', 'name']));
    assert.equal(r.stdout, 'namespace/default\n');
  });
});

describe('drover CLI with a node agent (fake runtime)', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const run = (...args: string[]) => drover(env, args);

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-a', runtime: new FakeRuntime(), heartbeatSeconds: 1, resyncSeconds: 1 });
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
  });
  after(async () => {
    await t?.stop();
  });

  it('nodes show Ready with inventory; a pod runs, has logs and events', async () => {
    await waitFor('node edge-a Ready', async () => {
      const r = await t.api('GET', '/api/v1/nodes/edge-a');
      return r.body?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    });
    const table = rows(ok(await run('get', 'nodes')).stdout);
    const row = table.find((r) => r[0] === 'edge-a');
    assert.ok(row, JSON.stringify(table));
    assert.equal(row[1], 'Ready');
    assert.notEqual(row[5], '<none>', 'ARCH');
    assert.match(ok(await run('describe', 'node', 'edge-a')).stdout, /^System Info:$/m);

    ok(await drover(env, ['apply', '-f', '-'], POD('app: web')));
    await waitFor('pod web Running', async () => {
      const r = await t.api('GET', '/api/v1/namespaces/default/pods/web');
      return r.body?.status?.phase === 'Running' && r.body?.status?.containerStatuses?.[0]?.ready;
    });
    const pods = rows(ok(await run('get', 'pods', '-o', 'wide')).stdout);
    assert.deepEqual([pods[1]![0], pods[1]![1], pods[1]![2]], ['web', '1/1', 'Running']);
    assert.equal(pods[1]![6], 'edge-a');
    assert.equal(ok(await run('logs', 'web', '--tail', '2')).stdout, 'line 2\nline 3\n');
    assert.equal(ok(await run('logs', 'web', '-c', 'web')).stdout, 'line 1\nline 2\nline 3\n');
    const d = ok(await run('describe', 'pod', 'web')).stdout;
    assert.match(d, /^Node: +edge-a/m);
    assert.match(d, /^    State: +Running$/m);
    assert.match(d, /^Events:\n  Type +Reason +Age +From +Message$/m);
    // The scheduler's binding is not undone by re-applying a manifest without nodeName.
    assert.equal(ok(await drover(env, ['apply', '-f', '-'], POD('app: web'))).stdout, 'pod/web unchanged\n');
  });

  it('exec: runs on the node, prints the output, exits with the command exit code; errors name the cause', async () => {
    assert.equal(ok(await run('exec', 'web', '--', 'echo', 'hello', '-c', 'x')).stdout, 'echo hello -c x\n');
    const failed = await run('exec', 'pod/web', '-c', 'web', '--', 'exit', '3');
    assert.equal(failed.code, 3);
    assert.equal(failed.stderr, 'command terminated with exit code 3\n');
    fails(await run('exec', 'nope', '--', 'true'), /pods "nope" not found/);
    fails(await run('exec', 'web', '-c', 'other', '--', 'true'), /container other is not valid for pod web \(containers: web\)/);
    fails(await run('exec', 'web'), /you must specify at least one command/);
    fails(await run('exec', 'web', '--timeout', '2h', '--', 'true'), /invalid --timeout "2h"/);
    const bad = await t.api('POST', '/api/v1/namespaces/default/pods/web/exec', { command: 'ls' });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /command: required, a non-empty list of strings/);
  });
});
