/**
 * kubectl's habits in drover's own CLI, end to end (the program src/main.ts runs, in process, against a
 * real server over HTTPS): global flags before the verb, set-based selectors, several kinds and names,
 * label columns, sorting, no headers, JSONPath and custom columns, describe without a name.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { drover, fails, ok, rows } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const pod = (name: string, labels: Record<string, string>) => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: ${JSON.stringify(labels)}
spec:
  containers:
  - name: main
    image: localhost/busybox:latest
    command: ["sleep", "3600"]
`;

const DEPLOY = `apiVersion: apps/v1
kind: Deployment
metadata: { name: front, labels: { app: front } }
spec:
  replicas: 0
  selector: { matchLabels: { app: front } }
  template:
    metadata: { labels: { app: front } }
    spec: { containers: [{ name: main, image: localhost/busybox:latest }] }
`;

describe('drover CLI: kubectl habits', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const run = (...args: string[]) => drover(env, args);

  before(async () => {
    t = await startTestServer();
    // Only the CA is in the environment: server and token come from the flags under test.
    env = { DROVER_SERVER: 'https://127.0.0.1:1', DROVER_TOKEN: 'wrong' };
    const manifests = [pod('web-b', { app: 'web', tier: 'front' }), pod('web-a', { app: 'web', tier: 'back', legacy: 'yes' }), pod('db', { app: 'db' }), pod('cache', { app: 'cache' }), DEPLOY].join('---\n');
    ok(await drover({ DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token }, ['apply', '-f', '-'], manifests));
    ok(await drover({ DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token }, ['create', 'namespace', 'prod']));
    ok(await drover({ DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token }, ['apply', '-n', 'prod', '-f', '-'], pod('p1', { app: 'web' })));
  });
  after(async () => {
    await t?.stop();
  });

  it('global flags before the verb, after it, and the last one wins', async () => {
    const names = (r: { stdout: string }) => rows(r.stdout).slice(1).map((c) => c[0]);
    assert.deepEqual(names(ok(await run('--server', t.apiUrl, '--token', t.token, 'get', 'pods'))), ['cache', 'db', 'web-a', 'web-b']);
    assert.deepEqual(names(ok(await run('--server', t.apiUrl, '--token', t.token, '-n', 'prod', 'get', 'pods'))), ['p1']);
    assert.deepEqual(names(ok(await run('get', 'pods', '-n', 'prod', '--server', t.apiUrl, '--token', t.token))), ['p1']);
    assert.deepEqual(names(ok(await run('-n', 'default', '--server', t.apiUrl, '--token', t.token, 'get', 'pods', '-n', 'prod'))), ['p1'], 'the verb\'s own flag, given later, wins');
    // The wrong token from the environment is not used when the flag gives one, and vice versa.
    fails(await run('--server', t.apiUrl, 'get', 'pods'), /unauthorized/);
    // -n on a verb without namespaces is ignored, as kubectl does.
    ok(await run('--server', t.apiUrl, '--token', t.token, '-n', 'prod', 'version'));
  });

  it('set-based selectors select on the server; a bad one names its term', async () => {
    const g = (sel: string) => run('--server', t.apiUrl, '--token', t.token, 'get', 'pods', '-l', sel, '-o', 'name');
    assert.equal(ok(await g('app in (web,db)')).stdout, 'pod/db\npod/web-a\npod/web-b\n');
    assert.equal(ok(await g('app notin (web)')).stdout, 'pod/cache\npod/db\n');
    assert.equal(ok(await g('app in (web),!legacy')).stdout, 'pod/web-b\n');
    assert.equal(ok(await g('legacy')).stdout, 'pod/web-a\n');
    assert.equal(ok(await g('app==web,tier!=back')).stdout, 'pod/web-b\n');
    fails(await g('app in (web,db'), /invalid label selector "app in \(web,db": in "app in \(web,db": missing "\)"/);
    // The server refuses it the same way for a client that does not check first (kubectl sends as typed).
    const res = await fetch(`${t.apiUrl}/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent('app in (web')}`, { headers: { authorization: `Bearer ${t.token}` } });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { message: string }).message, /missing "\)" after the values of "app"/);
  });

  it('get po,deploy prints a table per kind with kind/name; get pods a b; a missing name fails after the others', async () => {
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
    const out = ok(await run('get', 'po,deploy')).stdout;
    const [pods, deploys] = out.split('\n\n');
    assert.match(pods!, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\npod\/cache\s/);
    assert.match(deploys!, /^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\ndeployment\.apps\/front\s+0\/0/);
    assert.deepEqual(rows(ok(await run('get', 'pods', 'web-a', 'db')).stdout).map((r) => r[0]), ['NAME', 'web-a', 'db']);
    const r = await run('get', 'pods', 'web-a', 'nope');
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^NAME.*\nweb-a\s/);
    assert.match(r.stderr, /^error: pods "nope" not found$/m);
    assert.equal(ok(await run('get', 'pod/db', 'deploy/front', '-o', 'name')).stdout, 'pod/db\ndeployment.apps/front\n');
    const empty = ok(await run('get', 'po,deploy', '-n', 'kube-system'));
    assert.equal(empty.stderr, 'No resources found in kube-system namespace.\n');
  });

  it('--show-labels, -L, --sort-by, --no-headers', async () => {
    const table = rows(ok(await run('get', 'pods', '-l', 'app=web', '--show-labels', '-L', 'tier,legacy')).stdout);
    assert.deepEqual(table[0]!.slice(-3), ['TIER', 'LEGACY', 'LABELS']);
    assert.deepEqual(table[1]!.slice(-3), ['back', 'yes', 'app=web,legacy=yes,tier=back']);
    assert.deepEqual(table[2]!.slice(-2), ['front', 'app=web,tier=front'], 'an absent label is an empty cell');
    const sorted = ok(await run('get', 'pods', '--sort-by', '{.metadata.labels.app}', '--no-headers', '-o', 'custom-columns=NAME:.metadata.name,APP:.metadata.labels.app'));
    assert.deepEqual(rows(sorted.stdout).map((r) => r[1]), ['cache', 'db', 'web', 'web']);
    const desc = ok(await run('get', 'pods', '--sort-by=.metadata.name', '--no-headers')).stdout;
    assert.deepEqual(desc.trimEnd().split('\n').map((l) => l.split(/\s+/)[0]), ['cache', 'db', 'web-a', 'web-b']);
    fails(await run('get', 'pods', '--sort-by', '{.metadata.name'), /error parsing jsonpath/);
  });

  it('-o jsonpath and -o custom-columns as kubectl prints them', async () => {
    assert.equal(ok(await run('get', 'pods', '-l', 'app=web', '-o', 'jsonpath={.items[*].metadata.name}')).stdout, 'web-a web-b');
    assert.equal(ok(await run('get', 'pods', '-o', 'jsonpath={range .items[?(@.metadata.labels.app=="web")]}{.metadata.name}:{.spec.containers[0].image}{"\\n"}{end}')).stdout, 'web-a:localhost/busybox:latest\nweb-b:localhost/busybox:latest\n');
    assert.equal(ok(await run('get', 'pod', 'db', '-o', 'jsonpath={.metadata.labels.app}')).stdout, 'db');
    const cc = ok(await run('get', 'pods', '-o', 'custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier,IMAGES:.spec.containers[*].image'));
    assert.deepEqual(rows(cc.stdout)[0], ['NAME', 'TIER', 'IMAGES']);
    assert.deepEqual(rows(cc.stdout).find((r) => r[0] === 'db'), ['db', '<none>', 'localhost/busybox:latest']);
    fails(await run('get', 'pods', '-o', 'custom-columns=NAME'), /expected <header>:<json-path-expr>/);
    fails(await run('get', 'pods', '-o', 'xml'), /output format "xml".*jsonpath=/);
  });

  it('describe pods with no name describes every pod of the namespace (and -l)', async () => {
    const out = ok(await run('describe', 'pods', '-l', 'app in (web)')).stdout;
    assert.deepEqual([...out.matchAll(/^Name:\s+(\S+)$/gm)].map((m) => m[1]), ['web-a', 'web-b']);
    assert.match(out, /^IP:\s*$/m, 'no pod IP reported: empty, not the host address');
    const prod = ok(await run('-n', 'prod', 'describe', 'pods')).stdout;
    assert.deepEqual([...prod.matchAll(/^Name:\s+(\S+)$/gm)].map((m) => m[1]), ['p1']);
    assert.equal(ok(await run('describe', 'pods', '-n', 'kube-system')).stderr, 'No resources found in kube-system namespace.\n');
  });
});
