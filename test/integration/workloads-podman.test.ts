/**
 * DaemonSet and Job end to end: real server (API, controllers, scheduler, embedded broker), real
 * agents, real podman. Both agents share one podman sandbox; their containers are labeled per node.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';

function container(command: string) {
  return { name: 'main', image: IMAGE, command: ['sh', '-c', command], resources: { requests: { cpu: '50m', memory: '16Mi' } } };
}

const job = (name: string, o: { completions: number; parallelism: number; backoffLimit: number; command: string }) => ({
  apiVersion: 'batch/v1',
  kind: 'Job',
  metadata: { name },
  spec: {
    completions: o.completions,
    parallelism: o.parallelism,
    backoffLimit: o.backoffLimit,
    template: { spec: { restartPolicy: 'Never', containers: [container(o.command)] } },
  },
});

describe('DaemonSet and Job on real podman', () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;

  const podsOf = async (selector: string): Promise<any[]> => {
    const r = await cluster.api('GET', `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`);
    assert.equal(r.status, 200, r.text);
    return r.body.items;
  };
  const nodeReady = (name: string) =>
    waitFor(`node ${name} Ready`, async () => {
      const r = await cluster.api('GET', `/api/v1/nodes/${name}`);
      return r.status === 200 && r.body.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
    });
  const runningContainer = (pod: any, node: string) =>
    waitFor(
      `container of ${pod.metadata.name} running on ${node}`,
      async () => {
        const cs = await sb.runtime.list({ [LABELS.podUid]: pod.metadata.uid, [LABELS.node]: node });
        return cs.length === 1 && cs[0]!.state === 'running' ? cs[0] : undefined;
      },
      60_000,
    );

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    cluster = await startTestServer();
    await cluster.addAgent({ node: 'edge-1', runtime: sb.runtime });
    await nodeReady('edge-1');
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
  });

  test('DaemonSet: a pod on edge-1, then one on edge-2 when it joins; deleting the DaemonSet removes both', async () => {
    const t0 = Date.now();
    const created = await cluster.api('POST', '/apis/apps/v1/namespaces/default/daemonsets', {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'logger' },
      spec: {
        selector: { matchLabels: { app: 'logger' } },
        template: { metadata: { labels: { app: 'logger' } }, spec: { containers: [container("echo daemon-up; trap 'exit 0' TERM; while true; do sleep 1; done")] } },
      },
    });
    assert.equal(created.status, 201, created.text);

    const p1 = await waitFor(
      'daemon pod Running on edge-1',
      async () => {
        const ps = await podsOf('app=logger');
        return ps.length === 1 && ps[0].spec.nodeName === 'edge-1' && ps[0].status?.phase === 'Running' ? ps[0] : undefined;
      },
      60_000,
    );
    await runningContainer(p1, 'edge-1');
    console.log(`DaemonSet pod running on edge-1 in ${Date.now() - t0} ms`);
    assert.match(p1.metadata.name, /^logger-[a-z0-9]{5}$/);
    assert.equal(p1.metadata.ownerReferences[0].kind, 'DaemonSet');

    const t1 = Date.now();
    await cluster.addAgent({ node: 'edge-2', runtime: sb.runtime });
    const p2 = await waitFor(
      'daemon pod Running on edge-2',
      async () => {
        const ps = await podsOf('app=logger');
        return ps.find((p) => p.spec.nodeName === 'edge-2' && p.status?.phase === 'Running');
      },
      60_000,
    );
    await runningContainer(p2, 'edge-2');
    console.log(`edge-2 joined → its DaemonSet pod running in ${Date.now() - t1} ms`);

    const ds = await waitFor('DaemonSet status 2/2 ready', async () => {
      const r = await cluster.api('GET', '/apis/apps/v1/namespaces/default/daemonsets/logger');
      const s = r.body.status;
      return s?.desiredNumberScheduled === 2 && s.currentNumberScheduled === 2 && s.numberReady === 2 && s.updatedNumberScheduled === 2 ? r.body : undefined;
    });
    assert.equal(ds.status.numberMisscheduled, 0);
    assert.equal((await podsOf('app=logger')).length, 2);
    // edge-1 still runs exactly its own pod: the shared sandbox did not confuse the agents.
    await runningContainer(p1, 'edge-1');

    const t2 = Date.now();
    assert.equal((await cluster.api('DELETE', '/apis/apps/v1/namespaces/default/daemonsets/logger')).status, 200);
    await waitFor('daemon pods and containers gone', async () => (await podsOf('app=logger')).length === 0 && (await sb.runtime.list({ [LABELS.pod]: p1.metadata.name })).length === 0 && (await sb.runtime.list({ [LABELS.pod]: p2.metadata.name })).length === 0, 60_000);
    console.log(`DaemonSet deleted → pods and containers removed in ${Date.now() - t2} ms`);
  });

  test('Job: completions 2, parallelism 1, `echo done` → Complete with 2 succeeded', async () => {
    const t0 = Date.now();
    const r = await cluster.api('POST', '/apis/batch/v1/namespaces/default/jobs', job('hello', { completions: 2, parallelism: 1, backoffLimit: 2, command: 'echo done' }));
    assert.equal(r.status, 201, r.text);
    const done = await waitFor(
      'job hello Complete',
      async () => {
        const j = await cluster.api('GET', '/apis/batch/v1/namespaces/default/jobs/hello');
        return j.body.status?.conditions?.some((c: any) => c.type === 'Complete' && c.status === 'True') ? j.body : undefined;
      },
      90_000,
    );
    console.log(`Job (2 completions, parallelism 1) complete in ${Date.now() - t0} ms`);
    assert.equal(done.status.succeeded, 2);
    assert.equal(done.status.active, 0);
    assert.ok(done.status.completionTime);
    const pods = await podsOf('job-name=hello');
    assert.equal(pods.length, 2);
    assert.ok(pods.every((p) => p.status.phase === 'Succeeded'), JSON.stringify(pods.map((p) => p.status.phase)));
    // Finished pods are kept, so their logs stay readable.
    const logs = await cluster.api('GET', `/api/v1/namespaces/default/pods/${pods[0].metadata.name}/log`);
    assert.equal(logs.status, 200, logs.text);
    assert.match(logs.text, /done/);
  });

  test('Job: exit 1, restartPolicy Never, backoffLimit 2 → 3 failed pods, then Failed/BackoffLimitExceeded', async () => {
    const t0 = Date.now();
    const r = await cluster.api('POST', '/apis/batch/v1/namespaces/default/jobs', job('broken', { completions: 1, parallelism: 1, backoffLimit: 2, command: 'echo failing; exit 1' }));
    assert.equal(r.status, 201, r.text);
    const failed = await waitFor(
      'job broken Failed',
      async () => {
        const j = await cluster.api('GET', '/apis/batch/v1/namespaces/default/jobs/broken');
        return j.body.status?.conditions?.some((c: any) => c.type === 'Failed' && c.status === 'True') ? j.body : undefined;
      },
      90_000,
    );
    console.log(`failing Job reached BackoffLimitExceeded in ${Date.now() - t0} ms`);
    const cond = failed.status.conditions.find((c: any) => c.type === 'Failed');
    assert.equal(cond.reason, 'BackoffLimitExceeded');
    assert.equal(failed.status.failed, 3);
    const pods = await podsOf('job-name=broken');
    assert.equal(pods.length, 3);
    assert.ok(pods.every((p) => p.status.phase === 'Failed'), JSON.stringify(pods.map((p) => p.status.phase)));
    const events = await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=broken');
    const reasons = events.body.items.map((e: any) => e.reason);
    assert.ok(reasons.includes('BackoffLimitExceeded') && reasons.includes('SuccessfulCreate'), String(reasons));
  });
});
