/**
 * Server + agent + real podman: ConfigMaps and Secrets as env and volumes, volume updates without a
 * restart, readiness and liveness probes, config errors and pull policy as a Kubernetes user sees them.
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const LOOP = 'trap "exit 0" TERM; while true; do sleep 1; done';
const NODE = 'edge-features';

function podManifest(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { terminationGracePeriodSeconds: 2, ...spec } };
}

describe('agent features against real podman', { timeout: 240_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;
  let stateDir: string;

  const getPod = async (name: string) => (await cluster.api('GET', `/api/v1/namespaces/default/pods/${name}`)).body;
  const containersOf = (pod: string) => sb.runtime.list({ [LABELS.pod]: pod });
  const create = async (path: string, obj: unknown) => {
    const r = await cluster.api('POST', path, obj);
    assert.equal(r.status, 201, r.text);
    return r.body;
  };
  const reasonsOf = async (pod: string): Promise<string[]> => {
    const events = await cluster.api('GET', `/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${pod}`);
    return events.body.items.map((e: any) => e.reason);
  };

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    cluster = await startTestServer();
    stateDir = await mkdtemp(join(tmpdir(), 'drover-agent-features-'));
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, stateDir, resyncSeconds: 2, heartbeatSeconds: 2 });
    await waitFor('node Ready', async () => {
      const r = await cluster.api('GET', `/api/v1/nodes/${NODE}`);
      return r.body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
    });
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
  });

  test('ConfigMap as env and volume, Secret as env, shared emptyDir; a ConfigMap change updates the file without a restart', async () => {
    await create('/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'app-config' }, data: { greeting: 'hello', 'app.conf': 'mode=one' } });
    await create('/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 's3cret' } });
    await create(
      '/api/v1/namespaces/default/pods',
      podManifest('cfg', {
        containers: [
          {
            name: 'main',
            image: IMAGE,
            command: ['sh', '-c', `echo "greeting=$GREETING password=$PASSWORD pod=$POD_NAME"; echo "file=\`cat /etc/app/app.conf\`"; ${LOOP}`],
            env: [
              { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'app-config', key: 'greeting' } } },
              { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            ],
            volumeMounts: [
              { name: 'config', mountPath: '/etc/app' },
              { name: 'shared', mountPath: '/shared' },
            ],
          },
          { name: 'writer', image: IMAGE, command: ['sh', '-c', `echo from-writer > /shared/msg; ${LOOP}`], volumeMounts: [{ name: 'shared', mountPath: '/shared' }] },
        ],
        volumes: [
          { name: 'config', configMap: { name: 'app-config' } },
          { name: 'shared', emptyDir: {} },
        ],
      }),
    );
    const running = await waitFor('pod cfg Ready', async () => {
      const p = await getPod('cfg');
      return p.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True' ? p : undefined;
    }, 60_000);
    const logs = await waitFor('logs of main', async () => {
      const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/cfg/log?container=main');
      return r.status === 200 && r.text.includes('file=') ? r.text : undefined;
    });
    assert.match(logs, /^greeting=hello password=s3cret pod=cfg$/m);
    assert.match(logs, /^file=mode=one$/m);

    const main = (await containersOf('cfg')).find((c) => c.labels[LABELS.container] === 'main')!;
    const shared = await waitFor('emptyDir shared between containers', async () => {
      const r = await sb.runtime.exec(main.id, ['cat', '/shared/msg'], 5_000);
      return r.exitCode === 0 ? r.output : undefined;
    });
    assert.equal(shared.trim(), 'from-writer');
    const uid = running.metadata.uid;
    await access(join(stateDir, 'pods', uid, 'volumes', 'shared'));

    // Change the ConfigMap: the file changes in place; the container is not restarted, its env stays.
    const cm = (await cluster.api('GET', '/api/v1/namespaces/default/configmaps/app-config')).body;
    const put = await cluster.api('PUT', '/api/v1/namespaces/default/configmaps/app-config', { ...cm, data: { greeting: 'bonjour', 'app.conf': 'mode=two' } });
    assert.equal(put.status, 200, put.text);
    await waitFor('updated file inside the container', async () => {
      const r = await sb.runtime.exec(main.id, ['cat', '/etc/app/app.conf'], 5_000);
      return r.output.trim() === 'mode=two';
    }, 30_000);
    const after = (await containersOf('cfg')).find((c) => c.labels[LABELS.container] === 'main')!;
    assert.equal(after.id, main.id, 'same container');
    assert.equal(after.startedAt, main.startedAt, 'not restarted');
    assert.equal(after.state, 'running');
    const env = await sb.runtime.exec(main.id, ['sh', '-c', 'echo $GREETING'], 5_000);
    assert.equal(env.output.trim(), 'hello', 'env is fixed at container start, as in Kubernetes');
    const status = (await getPod('cfg')).status;
    assert.deepEqual(status.containerStatuses.map((c: any) => c.restartCount), [0, 0]);
    // The node's cache holds the Secret (so the pod comes back offline), sealed with the node's key.
    const cache = await readFile(join(stateDir, 'desired.json'), 'utf8');
    assert.match(cache, /"sealedSecrets":"k8s:enc:aesgcm:v1:/);
    assert.doesNotMatch(cache, /s3cret|czNjcmV0/);

    assert.equal((await cluster.api('DELETE', '/api/v1/namespaces/default/pods/cfg')).status, 200);
    await waitFor('containers and pod volumes removed', async () => {
      if ((await containersOf('cfg')).length) return false;
      return access(join(stateDir, 'pods', uid)).then(() => false, () => true);
    }, 30_000);
  });

  test('a missing ConfigMap key blocks the container with CreateContainerConfigError until it exists', async () => {
    await create(
      '/api/v1/namespaces/default/pods',
      podManifest('needs-cm', {
        containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', `echo "level=$LEVEL"; ${LOOP}`], env: [{ name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'late-config', key: 'level' } } }] }],
      }),
    );
    const waiting = await waitFor('CreateContainerConfigError', async () => {
      const s = (await getPod('needs-cm')).status?.containerStatuses?.[0];
      return s?.reason === 'CreateContainerConfigError' ? s : undefined;
    }, 30_000);
    assert.equal(waiting.state, 'waiting');
    assert.equal(waiting.message, 'configmap "late-config" not found');
    assert.equal((await getPod('needs-cm')).status.phase, 'Pending');
    assert.deepEqual(await containersOf('needs-cm'), []);

    await create('/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'late-config' }, data: { other: 'x' } });
    await waitFor('missing key named', async () => (await getPod('needs-cm')).status?.containerStatuses?.[0]?.message === "couldn't find key level in ConfigMap default/late-config", 30_000);

    const cm = (await cluster.api('GET', '/api/v1/namespaces/default/configmaps/late-config')).body;
    await cluster.api('PUT', '/api/v1/namespaces/default/configmaps/late-config', { ...cm, data: { level: 'debug' } });
    await waitFor('pod running with the value', async () => {
      const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/needs-cm/log');
      return r.status === 200 && r.text.includes('level=debug');
    }, 30_000);
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/needs-cm');
  });

  test('imagePullPolicy Never with a missing image: ErrImageNeverPull, no pull', async () => {
    await create('/api/v1/namespaces/default/pods', podManifest('never', { containers: [{ name: 'main', image: 'localhost/not-here:1', imagePullPolicy: 'Never' }] }));
    const s = await waitFor('ErrImageNeverPull', async () => {
      const c = (await getPod('never')).status?.containerStatuses?.[0];
      return c?.reason === 'ErrImageNeverPull' ? c : undefined;
    }, 30_000);
    assert.equal(s.message, 'Container image "localhost/not-here:1" is not present with pull policy of Never');
    assert.ok(!(await reasonsOf('never')).includes('Pulling'));
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/never');
  });

  test('readiness exec probe: the pod becomes Ready only after the container creates the file', async () => {
    await create(
      '/api/v1/namespaces/default/pods',
      podManifest('ready', {
        containers: [
          {
            name: 'main',
            image: IMAGE,
            command: ['sh', '-c', `mkdir -p /tmp; sleep 5; touch /tmp/ready; ${LOOP}`],
            readinessProbe: { exec: { command: ['test', '-f', '/tmp/ready'] }, periodSeconds: 1 },
          },
        ],
      }),
    );
    const notReady = await waitFor('running but not ready', async () => {
      const p = await getPod('ready');
      const c = p.status?.containerStatuses?.[0];
      return c?.state === 'running' ? p : undefined;
    }, 30_000);
    assert.equal(notReady.status.containerStatuses[0].ready, false);
    assert.equal(notReady.status.conditions.find((c: any) => c.type === 'Ready').status, 'False');
    const started = Date.parse(notReady.status.containerStatuses[0].startedAt);
    const ready = await waitFor('Ready', async () => {
      const p = await getPod('ready');
      return p.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True' ? p : undefined;
    }, 30_000);
    assert.equal(ready.status.containerStatuses[0].ready, true);
    assert.ok(Date.now() - started >= 4_000, 'not before the file exists');
    assert.equal(ready.status.containerStatuses[0].restartCount, 0);
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/ready');
  });

  test('httpGet readiness and tcpSocket liveness against the container IP', async () => {
    await create(
      '/api/v1/namespaces/default/pods',
      podManifest('web', {
        containers: [
          {
            name: 'main',
            image: IMAGE,
            command: ['sh', '-c', 'mkdir -p /www && echo ok > /www/healthz && sleep 2 && exec httpd -f -p 8080 -h /www'],
            ports: [{ name: 'http', containerPort: 8080 }],
            readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
            livenessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 4, periodSeconds: 1, failureThreshold: 3 },
          },
        ],
      }),
    );
    await waitFor('web Ready', async () => (await getPod('web')).status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True', 30_000);
    // Well past the liveness probe's initial delay: still the first run of the container.
    await new Promise((r) => setTimeout(r, 4_000));
    const s = (await getPod('web')).status.containerStatuses[0];
    assert.deepEqual([s.ready, s.restartCount, s.state], [true, 0, 'running']);
    assert.ok(!(await reasonsOf('web')).includes('Killing'));
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/web');
  });

  test('liveness exec probe failing: the container is killed and restarted, events Unhealthy and Killing', async () => {
    await create(
      '/api/v1/namespaces/default/pods',
      podManifest('sick', {
        containers: [
          {
            name: 'main',
            image: IMAGE,
            command: ['sh', '-c', LOOP],
            livenessProbe: { exec: { command: ['test', '-f', '/tmp/alive'] }, periodSeconds: 1, failureThreshold: 2 },
          },
        ],
      }),
    );
    const first = await waitFor('sick running', async () => {
      const [c] = await containersOf('sick');
      return c?.state === 'running' ? c : undefined;
    }, 30_000);
    const restarted = await waitFor('restartCount ≥ 1', async () => {
      const s = (await getPod('sick')).status?.containerStatuses?.[0];
      return s && s.restartCount >= 1 ? s : undefined;
    }, 60_000);
    assert.equal(restarted.containerID, first.id, 'restarted in place, like a crashed container');
    const reasons = await reasonsOf('sick');
    assert.ok(reasons.includes('Unhealthy'), `events: ${reasons}`);
    assert.ok(reasons.includes('Killing'), `events: ${reasons}`);
    const events = await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=sick');
    const killing = events.body.items.find((e: any) => e.reason === 'Killing');
    assert.equal(killing.message, 'Container main failed liveness probe, will be restarted');
    const unhealthy = events.body.items.find((e: any) => e.reason === 'Unhealthy');
    assert.match(unhealthy.message, /^Liveness probe failed: command \["test","-f","\/tmp\/alive"\] (exited with 1|timed out)/);
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/sick');
  });

  test('top: a busy container shows its CPU and memory in metrics.k8s.io, measured by the agent through podman stats', async () => {
    await create('/api/v1/namespaces/default/pods', podManifest('busy', { containers: [{ name: 'spin', image: IMAGE, command: ['sh', '-c', 'trap "exit 0" TERM; while true; do :; done'] }] }));
    await create('/api/v1/namespaces/default/pods', podManifest('idle', { containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', LOOP] }] }));
    const metricsOf = async (name: string) => {
      const r = await cluster.api('GET', '/apis/metrics.k8s.io/v1beta1/namespaces/default/pods');
      return r.body?.items?.find((m: any) => m.metadata.name === name)?.usage as { cpu: string; memory: string } | undefined;
    };
    const milli = (q: string) => (q.endsWith('n') ? Number(q.slice(0, -1)) / 1e6 : q.endsWith('m') ? Number(q.slice(0, -1)) : Number(q) * 1000);
    const bytes = (q: string) => Number(q.replace(/Ki$/, '')) * (q.endsWith('Ki') ? 1024 : 1);
    // A CPU figure needs two samples (a rate between heartbeats): wait for a non-zero one.
    const busy = await waitFor('busy pod CPU measured', async () => {
      const u = await metricsOf('busy');
      return u && milli(u.cpu) > 0 ? u : undefined;
    }, 60_000);
    const idle = await waitFor('idle pod measured', () => metricsOf('idle'), 30_000);
    console.log(`[top] busy pod ${busy.cpu} CPU ${busy.memory}; idle pod ${idle.cpu} CPU ${idle.memory}`);
    // A shell spinning in a loop burns what it gets of a core (a share of it on a loaded machine, as
    // the suite is run with a busy core beside it); one sleeping burns next to nothing.
    assert.ok(milli(busy.cpu) > 10 * Math.max(milli(idle.cpu), 5), `busy pod CPU ${busy.cpu}, idle pod CPU ${idle.cpu}`);
    assert.ok(milli(idle.cpu) < 100, `idle pod CPU ${idle.cpu}`);
    assert.ok(bytes(busy.memory) > 0, `busy pod memory ${busy.memory}`);
    const nodes = await cluster.api('GET', '/apis/metrics.k8s.io/v1beta1/nodes');
    const node = nodes.body.items.find((m: any) => m.metadata.name === NODE);
    assert.ok(node && bytes(node.usage.memory) > 1024 * 1024, `node metrics ${JSON.stringify(node)}`);
    for (const p of ['busy', 'idle']) assert.equal((await cluster.api('DELETE', `/api/v1/namespaces/default/pods/${p}`)).status, 200);
  });

  test('exec: a command runs in the real container; its output and exit code come back through the API', async () => {
    await create('/api/v1/namespaces/default/pods', podManifest('sh', { containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', `echo inside > /mark; ${LOOP}`] }] }));
    await waitFor('pod Running', async () => (await getPod('sh'))?.status?.phase === 'Running', 60_000);
    await waitFor('the container wrote its file', async () => (await cluster.api('POST', '/api/v1/namespaces/default/pods/sh/exec', { command: ['test', '-f', '/mark'] })).body?.exitCode === 0, 20_000, 200);
    const r = await cluster.api('POST', '/api/v1/namespaces/default/pods/sh/exec', { command: ['sh', '-c', 'cat /mark; echo $((6*7)); exit 5'] });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, { exitCode: 5, output: 'inside\n42\n', timedOut: false });
    const slow = await cluster.api('POST', '/api/v1/namespaces/default/pods/sh/exec', { command: ['sleep', '30'], timeoutSeconds: 1 });
    assert.equal(slow.status, 200, slow.text);
    assert.equal(slow.body.timedOut, true);
    assert.equal((await cluster.api('DELETE', '/api/v1/namespaces/default/pods/sh')).status, 200);
  });
});
