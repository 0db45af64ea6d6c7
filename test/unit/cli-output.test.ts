import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { kindInfo } from '../../src/api/kinds.js';
import { parseObject } from '../../src/api/validate.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Event } from '../../src/api/event.js';
import type { Node } from '../../src/api/node.js';
import type { ContainerStatus, Pod } from '../../src/api/pod.js';
import { isUnchanged, keepSystemFields, targetObject } from '../../src/cli/apply.js';
import { ApiClient, CliError, errorFromResponse, parseWarningHeader } from '../../src/cli/client.js';
import { DEFAULT_SERVER, resolveConfig } from '../../src/cli/config.js';
import { notFound, parseDuration, parseResourceArgs } from '../../src/cli/context.js';
import { describeNode, describeObject, describePod, probeText, tolerationText } from '../../src/cli/describe.js';
import { parseSource, readManifestSources, validateSources } from '../../src/cli/manifests.js';
import {
  humanDuration,
  nodeStatusText,
  objectName,
  parseOutputFormat,
  podReadyText,
  podStatusText,
  renderObjects,
  renderTable,
  tableFor,
  tabwrite,
} from '../../src/cli/output.js';
import { registerCliCommands } from '../../src/cli/program.js';

const NOW = Date.parse('2024-05-01T12:00:00Z');
const ago = (ms: number): string => new Date(NOW - ms).toISOString();
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

function mkPod(name: string, o: { phase?: Pod['status'] extends infer T ? (T extends { phase: infer P } ? P : never) : never; reason?: string; statuses?: Partial<ContainerStatus>[]; containers?: number; node?: string; hostIP?: string; ns?: string; deleting?: boolean } = {}): Pod {
  const n = o.containers ?? 1;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: o.ns ?? 'default', creationTimestamp: ago(5 * M), ...(o.deleting ? { deletionTimestamp: ago(1 * S) } : {}) },
    spec: {
      containers: Array.from({ length: n }, (_, i) => ({ name: `c${i}`, image: 'busybox' })),
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 10,
      nodeName: o.node,
    },
    status: {
      phase: o.phase ?? 'Running',
      reason: o.reason,
      hostIP: o.hostIP,
      containerStatuses: o.statuses?.map((s, i) => ({ name: `c${i}`, image: 'busybox', ready: false, restartCount: 0, state: 'running' as const, ...s })),
    },
  };
}

function mkNode(name: string, o: { ready?: 'True' | 'False' | 'Unknown' | 'none'; unschedulable?: boolean; labels?: Record<string, string>; memory?: string } = {}): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: o.labels, creationTimestamp: ago(3 * D) },
    spec: o.unschedulable ? { unschedulable: true } : {},
    status: {
      capacity: { cpu: '4', memory: o.memory ?? String(8 * 2 ** 30), pods: '110' },
      conditions: o.ready === 'none' ? [] : [{ type: 'Ready', status: o.ready ?? 'True' }],
      nodeInfo: {
        architecture: 'arm64', operatingSystem: 'linux', osImage: 'Debian 12', kernelVersion: '6.1.0',
        containerRuntimeVersion: 'podman://4.9.3', agentVersion: '0.1.0', contractVersion: 1, bootID: 'b1',
      },
      addresses: [{ type: 'InternalIP', address: '10.0.0.7' }],
      lastHeard: ago(4 * S),
    },
  };
}

describe('AGE formatting (kubectl HumanDuration)', () => {
  it('formats like kubectl', () => {
    const cases: Array<[number, string]> = [
      [0, '0s'], [5 * S, '5s'], [119 * S, '119s'], [3 * M, '3m'], [3 * M + 10 * S, '3m10s'], [45 * M, '45m'],
      [179 * M, '179m'], [2 * H + 30 * M, '150m'], [5 * H + 30 * M, '5h30m'], [5 * H, '5h'], [20 * H, '20h'], [47 * H, '47h'], [4 * D, '4d'],
      [4 * D + 3 * H, '4d3h'], [30 * D, '30d'], [800 * D, '2y70d'], [3000 * D, '8y'], [-500, '0s'], [-5 * S, '<invalid>'],
    ];
    for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, `humanDuration(${ms})`);
  });
});

describe('tables', () => {
  it('aligns columns with three spaces and leaves the last column unpadded', () => {
    const out = renderTable(['NAME', 'STATUS', 'AGE'], [['default', 'Active', '4d'], ['kube-system-long', 'Active', '10m']]);
    assert.equal(out, ['NAME               STATUS   AGE', 'default            Active   4d', 'kube-system-long   Active   10m', ''].join('\n'));
  });

  it('gives narrow columns the kubectl minimum width', () => {
    assert.equal(renderTable(['A', 'B'], [['x', 'y']]), 'A     B\nx     y\n');
  });

  it('tabwrite aligns each block of consecutive cells separately, as describe needs', () => {
    const out = tabwrite('Name:\tweb\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tbusybox\n    Restart Count:\t0\n', { padding: 2 });
    assert.equal(out, 'Name:       web\nNamespace:  default\nContainers:\n  c:\n    Image:          busybox\n    Restart Count:  0\n');
  });

  it('pods table with READY, STATUS, RESTARTS, AGE and wide IP/NODE', () => {
    const pods = [
      mkPod('web', { statuses: [{ ready: true, restartCount: 2 }], node: 'edge-1', hostIP: '10.0.0.7' }),
      mkPod('db', { phase: 'Pending', containers: 2 }),
    ];
    const out = tableFor(kindInfo('Pod'), pods as unknown as ApiObject[], { now: NOW });
    assert.equal(out, ['NAME   READY   STATUS    RESTARTS   AGE', 'web    1/1     Running   2          5m', 'db     0/2     Pending   0          5m', ''].join('\n'));
    const wide = tableFor(kindInfo('Pod'), pods as unknown as ApiObject[], { now: NOW, wide: true });
    assert.match(wide.split('\n')[0]!, /AGE\s+IP\s+NODE$/);
    // A bridge-networked pod's address is its own (status.podIP), never its node's: <none> until the agent reports one.
    assert.match(wide.split('\n')[1]!, /5m\s+<none>\s+edge-1$/);
    assert.match(wide.split('\n')[2]!, /5m\s+<none>\s+<none>$/);
    const withIp = { ...pods[0]!, status: { ...pods[0]!.status, podIP: '10.88.0.5' } } as unknown as ApiObject;
    assert.match(tableFor(kindInfo('Pod'), [withIp], { now: NOW, wide: true }).split('\n')[1]!, /5m\s+10\.88\.0\.5\s+edge-1$/);
    const hostNet = { ...pods[0]!, spec: { ...pods[0]!.spec, hostNetwork: true } } as unknown as ApiObject;
    assert.match(tableFor(kindInfo('Pod'), [hostNet], { now: NOW, wide: true }).split('\n')[1]!, /5m\s+10\.0\.0\.7\s+edge-1$/, 'a host-network pod has its node address');
  });

  it('services and endpoint slices in kubectl\'s columns: TYPE, CLUSTER-IP, PORT(S) with nodePorts; ENDPOINTS cut after three', () => {
    const created = new Date(NOW - 5 * 60_000).toISOString();
    const meta = (name: string) => ({ name, namespace: 'default', creationTimestamp: created });
    const svcs = [
      { apiVersion: 'v1', kind: 'Service', metadata: meta('web'), spec: { type: 'NodePort', clusterIP: '10.43.0.12', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, nodePort: 30080, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] } },
      { apiVersion: 'v1', kind: 'Service', metadata: meta('db'), spec: { type: 'ClusterIP', clusterIP: 'None' } },
    ];
    assert.equal(tableFor(kindInfo('Service'), svcs as unknown as ApiObject[], { now: NOW }), [
      'NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)               AGE',
      'web    NodePort    10.43.0.12   <none>        80:30080/TCP,53/UDP   5m',
      'db     ClusterIP   None         <none>        <none>                5m',
      '',
    ].join('\n'));
    assert.match(tableFor(kindInfo('Service'), svcs as unknown as ApiObject[], { now: NOW, wide: true }).split('\n')[1]!, /5m\s+app=web$/);
    const slice = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: meta('web-x1'), addressType: 'IPv4', ports: [{ port: 8080, protocol: 'TCP' }], endpoints: ['10.88.0.2', '10.88.0.3', '10.88.0.4', '10.88.0.5'].map((a) => ({ addresses: [a], conditions: { ready: true } })) };
    assert.match(tableFor(kindInfo('EndpointSlice'), [slice] as unknown as ApiObject[], { now: NOW }).split('\n')[1]!, /^web-x1\s+IPv4\s+8080\s+10\.88\.0\.2,10\.88\.0\.3,10\.88\.0\.4 \+ 1 more\.\.\.\s+5m$/);
  });

  it('adds a NAMESPACE column for -A', () => {
    const out = tableFor(kindInfo('Pod'), [mkPod('web', { ns: 'prod' })] as unknown as ApiObject[], { now: NOW, allNamespaces: true });
    assert.match(out.split('\n')[0]!, /^NAMESPACE\s+NAME\s+READY/);
    assert.match(out.split('\n')[1]!, /^prod\s+web\s+0\/1/);
  });

  it('nodes table with inventory columns, memory in binary units, wide extras', () => {
    const nodes = [mkNode('edge-1', { labels: { 'node-role.kubernetes.io/gateway': '' } })];
    const out = tableFor(kindInfo('Node'), nodes as unknown as ApiObject[], { now: NOW });
    const [head, row] = out.split('\n');
    assert.deepEqual(head!.split(/\s{2,}/), ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', 'ARCH', 'OS', 'CPU', 'MEMORY', 'RUNTIME']);
    assert.deepEqual(row!.split(/\s{2,}/), ['edge-1', 'Ready', 'gateway', '3d', '0.1.0', 'arm64', 'linux', '4', '8Gi', 'podman://4.9.3']);
    const wide = tableFor(kindInfo('Node'), nodes as unknown as ApiObject[], { now: NOW, wide: true }).split('\n');
    assert.deepEqual(wide[0]!.split(/\s{2,}/).slice(-4), ['OS-IMAGE', 'KERNEL-VERSION', 'INTERNAL-IP', 'LAST-HEARD']);
    assert.deepEqual(wide[1]!.split(/\s{2,}/).slice(-4), ['Debian 12', '6.1.0', '10.0.0.7', '4s']);
  });

  it('keeps memory that is already a quantity as it is', () => {
    const row = tableFor(kindInfo('Node'), [mkNode('n', { memory: '512Mi' })] as unknown as ApiObject[], { now: NOW }).split('\n')[1]!;
    assert.ok(row.split(/\s{2,}/).includes('512Mi'));
  });

  it('namespaces and events tables', () => {
    const ns = tableFor(kindInfo('Namespace'), [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', creationTimestamp: ago(4 * H) } }], { now: NOW });
    assert.equal(ns, 'NAME      STATUS   AGE\ndefault   Active   4h\n');
    const ev: Event = {
      apiVersion: 'v1', kind: 'Event', metadata: { name: 'web.1', namespace: 'default' }, involvedObject: { kind: 'Pod', name: 'web' },
      type: 'Normal', reason: 'Scheduled', message: 'assigned default/web to edge-1', source: { component: 'scheduler' },
      firstTimestamp: ago(30 * S), lastTimestamp: ago(30 * S), count: 1,
    };
    const out = tableFor(kindInfo('Event'), [ev as unknown as ApiObject], { now: NOW }).split('\n');
    assert.deepEqual(out[0]!.split(/\s{2,}/), ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']);
    assert.deepEqual(out[1]!.split(/\s{2,}/), ['30s', 'Normal', 'Scheduled', 'pod/web', 'assigned default/web to edge-1']);
  });

  it('-o name, json and yaml', () => {
    const pod = mkPod('web') as unknown as ApiObject;
    assert.equal(renderObjects(kindInfo('Pod'), [pod], 'name', { single: false }), 'pod/web\n');
    assert.equal(JSON.parse(renderObjects(kindInfo('Pod'), [pod], 'json', { single: true })).metadata.name, 'web');
    const list = JSON.parse(renderObjects(kindInfo('Pod'), [pod], 'json', { single: false }));
    assert.equal(list.kind, 'List');
    assert.equal(list.items.length, 1);
    const yaml = renderObjects(kindInfo('Pod'), [pod], 'yaml', { single: false });
    assert.match(yaml, /^apiVersion: v1\nitems:\n- apiVersion: v1\n/);
    assert.throws(() => parseOutputFormat('xml'), /output format "xml"/);
  });
});

describe('workload and config kinds', () => {
  const deploy = parseObject({
    apiVersion: 'apps/v1', kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', creationTimestamp: ago(10 * M) },
    spec: {
      replicas: 3, selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.25', readinessProbe: { httpGet: { port: 80 } } }] } },
    },
  }).object;
  deploy.status = { replicas: 3, updatedReplicas: 3, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 1 };

  it('deployment table, wide columns and group-qualified names', () => {
    const out = tableFor(kindInfo('Deployment'), [deploy], { now: NOW, wide: true }).split('\n');
    assert.deepEqual(out[0]!.split(/\s{2,}/), ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE', 'CONTAINERS', 'IMAGES', 'SELECTOR']);
    assert.deepEqual(out[1]!.split(/\s{2,}/), ['web', '2/3', '3', '2', '10m', 'web', 'nginx:1.25', 'app=web']);
    assert.equal(objectName(kindInfo('Deployment'), 'web'), 'deployment.apps/web');
    assert.equal(objectName(kindInfo('Pod'), 'web'), 'pod/web');
    assert.equal(notFound(kindInfo('Job'), 'x').message, 'jobs.batch "x" not found');
  });

  it('jobs, configmaps, secrets', () => {
    const job = parseObject({
      apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'once', creationTimestamp: ago(M) },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox' }] } } },
    }).object;
    job.status = { active: 0, succeeded: 1, failed: 0, startTime: ago(50 * S), completionTime: ago(20 * S), conditions: [{ type: 'Complete', status: 'True' }] };
    assert.deepEqual(tableFor(kindInfo('Job'), [job], { now: NOW }).split('\n')[1]!.split(/\s{2,}/), ['once', 'Complete', '1/1', '30s', '60s']);
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', creationTimestamp: ago(M) }, data: { a: '1', b: '2' } };
    assert.deepEqual(tableFor(kindInfo('ConfigMap'), [cm], { now: NOW }).split('\n')[1]!.split(/\s{2,}/), ['cfg', '2', '60s']);
    const sec = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'pw', creationTimestamp: ago(M) }, type: 'Opaque', data: { p: 'aGk=' } };
    assert.deepEqual(tableFor(kindInfo('Secret'), [sec], { now: NOW }).split('\n')[1]!.split(/\s{2,}/), ['pw', 'Opaque', '1', '60s']);
    assert.match(describeObject(sec, [], NOW), /\np: +2 bytes\n/);
    assert.doesNotMatch(describeObject(sec, [], NOW), /aGk=/);
  });

  it('describe deployment shows replicas, the pod template and probes', () => {
    const out = describeObject(deploy, [], NOW);
    assert.match(out, /^Replicas: +3 desired \| 3 updated \| 3 total \| 2 available \| 1 unavailable$/m);
    assert.match(out, /^Pod Template:\n  Labels: +app=web\n  Containers:\n    web:\n/m);
    assert.match(out, /^ +Readiness: +http-get http:\/\/:80\/ delay=0s timeout=1s period=10s #success=1 #failure=3$/m);
    assert.match(out, /\nEvents: +<none>\n$/);
  });

  it('tolerations as kubectl prints them', () => {
    assert.equal(tolerationText({ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }), 'node.kubernetes.io/not-ready:NoExecute op=Exists for 300s');
    assert.equal(tolerationText({ key: 'dedicated', operator: 'Equal', value: 'edge', effect: 'NoSchedule' }), 'dedicated=edge:NoSchedule');
    assert.equal(tolerationText({ operator: 'Exists' }), 'op=Exists');
    assert.equal(probeText({ exec: { command: ['cat', '/tmp/ok'] }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 }), 'exec [cat /tmp/ok] delay=5s timeout=1s period=10s #success=1 #failure=3');
  });
});

describe('pod STATUS and READY', () => {
  it('uses the phase when containers have nothing to say', () => {
    assert.equal(podStatusText(mkPod('p', { phase: 'Running', statuses: [{ state: 'running', ready: true }] })), 'Running');
    assert.equal(podStatusText(mkPod('p', { phase: 'Pending' })), 'Pending');
  });
  it('prefers the pod reason over the phase', () => {
    assert.equal(podStatusText(mkPod('p', { phase: 'Pending', reason: 'Unschedulable' })), 'Unschedulable');
  });
  it("shows a waiting or terminated container's reason", () => {
    assert.equal(podStatusText(mkPod('p', { phase: 'Running', statuses: [{ state: 'waiting', reason: 'CrashLoopBackOff' }] })), 'CrashLoopBackOff');
    assert.equal(podStatusText(mkPod('p', { phase: 'Pending', reason: 'Scheduled', statuses: [{ state: 'waiting', reason: 'ContainerCreating' }] })), 'ContainerCreating');
    assert.equal(podStatusText(mkPod('p', { phase: 'Failed', statuses: [{ state: 'terminated', reason: 'Error', exitCode: 1 }] })), 'Error');
    assert.equal(podStatusText(mkPod('p', { phase: 'Failed', statuses: [{ state: 'terminated', exitCode: 3 }] })), 'ExitCode:3');
  });
  it('the first container with a reason wins, like kubectl', () => {
    const p = mkPod('p', { containers: 2, statuses: [{ state: 'waiting', reason: 'ImagePullBackOff' }, { state: 'terminated', reason: 'Error' }] });
    assert.equal(podStatusText(p), 'ImagePullBackOff');
  });
  it('Terminating while being deleted', () => {
    assert.equal(podStatusText(mkPod('p', { deleting: true })), 'Terminating');
  });
  it('READY counts ready containers over spec containers', () => {
    assert.equal(podReadyText(mkPod('p', { containers: 2, statuses: [{ ready: true }, { ready: false }] })), '1/2');
    assert.equal(podReadyText(mkPod('p', { containers: 3 })), '0/3');
    // Node lost: the last report said ready, but nobody knows now.
    const lost = mkPod('p', { containers: 2, statuses: [{ ready: true }, { ready: true }] });
    lost.status = { ...lost.status!, phase: 'Unknown', reason: 'NodeLost' };
    assert.equal(podReadyText(lost), '0/2');
  });
});

describe('node STATUS', () => {
  it('derives from the Ready condition and cordoning', () => {
    assert.equal(nodeStatusText(mkNode('n')), 'Ready');
    assert.equal(nodeStatusText(mkNode('n', { ready: 'False' })), 'NotReady');
    assert.equal(nodeStatusText(mkNode('n', { ready: 'Unknown' })), 'Unknown');
    assert.equal(nodeStatusText(mkNode('n', { ready: 'none' })), 'Unknown');
    assert.equal(nodeStatusText(mkNode('n', { unschedulable: true })), 'Ready,SchedulingDisabled');
    assert.equal(nodeStatusText(mkNode('n', { ready: 'False', unschedulable: true })), 'NotReady,SchedulingDisabled');
    const flapping = mkNode('n', { unschedulable: true });
    flapping.status!.conditions!.push({ type: 'LinkDegraded', status: 'True', reason: 'Flapping' });
    assert.equal(nodeStatusText(flapping), 'Ready,Degraded,SchedulingDisabled');
  });
});

describe('config resolution', () => {
  let dir: string;
  let cfgFile: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-cli-cfg-'));
    cfgFile = join(dir, 'config');
    await writeFile(cfgFile, JSON.stringify({ server: 'http://file:1', token: 'file-token' }));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('flags beat env beat file', () => {
    const env = { DROVER_CONFIG: cfgFile, DROVER_SERVER: 'http://env:1', DROVER_TOKEN: 'env-token' };
    assert.deepEqual(
      (({ server, token }) => ({ server, token }))(resolveConfig({ server: 'http://flag:1', token: 'flag-token' }, env)),
      { server: 'http://flag:1', token: 'flag-token' },
    );
    const fromEnv = resolveConfig({}, env);
    assert.equal(fromEnv.server, 'http://env:1');
    assert.equal(fromEnv.token, 'env-token');
    const fromFile = resolveConfig({}, { DROVER_CONFIG: cfgFile });
    assert.equal(fromFile.server, 'http://file:1');
    assert.equal(fromFile.token, 'file-token');
    assert.deepEqual(fromFile.sources, { server: 'file', token: 'file' });
  });

  it('resolves each value on its own', () => {
    const c = resolveConfig({ token: 'flag-token' }, { DROVER_CONFIG: cfgFile });
    assert.equal(c.server, 'http://file:1');
    assert.equal(c.token, 'flag-token');
  });

  it('falls back to the default server without a file; empty env counts as unset', () => {
    const c = resolveConfig({}, { DROVER_CONFIG: join(dir, 'missing'), DROVER_SERVER: '' });
    assert.equal(c.server, DEFAULT_SERVER);
    assert.equal(c.token, undefined);
  });

  it('reads ~/.drover/config under HOME when DROVER_CONFIG is unset', async () => {
    await mkdir(join(dir, 'home', '.drover'), { recursive: true });
    await writeFile(join(dir, 'home', '.drover', 'config'), JSON.stringify({ server: 'http://home:1' }));
    assert.equal(resolveConfig({}, { HOME: join(dir, 'home') }).server, 'http://home:1');
  });

  it('a malformed file is an error naming it', async () => {
    const bad = join(dir, 'bad');
    await writeFile(bad, '{ not json');
    assert.throws(() => resolveConfig({}, { DROVER_CONFIG: bad }), (e: Error) => e instanceof CliError && e.message.includes(bad));
  });
});

describe('apply: local validation', () => {
  const good = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n';

  it('accepts multi-document YAML and reports ignored fields as warnings', () => {
    const items = validateSources([{ name: 'ok.yaml', text: `${good}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n---\n${good.replace('image: nginx', 'image: nginx\n    terminationMessagePath: /dev/termination-log')}` }]);
    assert.deepEqual(items.map((i) => `${i.kind.kind}/${i.object.metadata.name}#${i.index}`), ['Pod/web#1', 'Namespace/prod#2', 'Pod/web#3']);
    assert.deepEqual(items[2]!.warnings, ['spec.containers[0].terminationMessagePath: not supported by drover, ignored']);
  });

  it('a bad manifest names the file, the document and the field path', () => {
    const bad = good.replace('    image: nginx\n', '');
    assert.throws(
      () => validateSources([{ name: 'a.yaml', text: good }, { name: 'b.yaml', text: `${good}---\n${bad}` }]),
      (e: Error) => e instanceof CliError && /"b\.yaml"/.test(e.message) && /document 2/.test(e.message) && /spec\.containers\[0\]\.image: required/.test(e.message),
    );
  });

  it('an unknown field is an error with its path', () => {
    assert.throws(() => validateSources([{ name: 'x.yaml', text: good.replace('    image: nginx', '    image: nginx\n    imagee: x') }]), /spec\.containers\[0\]\.imagee: unknown field/);
  });

  it('malformed YAML names the line', () => {
    const text = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web\nspec: {}\n';
    assert.throws(() => parseSource({ name: 'broken.yaml', text }), (e: Error) => e instanceof CliError && /broken\.yaml: line \d+/.test(e.message));
    assert.throws(() => parseSource({ name: 'dup.yaml', text: 'kind: Pod\nkind: Node\n' }), /dup\.yaml: line 2: duplicate key/);
  });

  it('an unknown kind is an error listing the supported kinds', () => {
    assert.throws(
      () => validateSources([{ name: 'c.yaml', text: 'apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: web\n' }]),
      /"c\.yaml": document 1 \(CronJob "web"\): kind: unknown kind "CronJob" \(supported: Pod/,
    );
  });

  it('reads directories of .yaml/.yml/.json in name order and rejects missing paths', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-cli-apply-'));
    try {
      await writeFile(join(dir, 'b.yml'), good);
      await writeFile(join(dir, 'a.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } }));
      await writeFile(join(dir, 'notes.txt'), 'ignored');
      const sources = await readManifestSources([dir], { stdin: async () => '' });
      assert.deepEqual(sources.map((s) => s.name), [join(dir, 'a.json'), join(dir, 'b.yml')]);
      await assert.rejects(readManifestSources([join(dir, 'nope.yaml')], { stdin: async () => '' }), /the path ".*nope\.yaml" does not exist/);
      assert.deepEqual((await readManifestSources(['-'], { stdin: async () => good })).map((s) => s.name), ['STDIN']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('namespace: manifest, else -n, else default; a contradiction is an error', () => {
    const [item] = validateSources([{ name: 'p.yaml', text: good }]);
    assert.equal(targetObject(item!, undefined).metadata.namespace, 'default');
    assert.equal(targetObject(item!, 'prod').metadata.namespace, 'prod');
    const [inNs] = validateSources([{ name: 'p.yaml', text: good.replace('  name: web', '  name: web\n  namespace: dev') }]);
    assert.equal(targetObject(inNs!, undefined).metadata.namespace, 'dev');
    assert.throws(() => targetObject(inNs!, 'prod'), /does not match the namespace "prod"/);
  });

  it('unchanged compares spec, labels and annotations, not server metadata or status', () => {
    const [item] = validateSources([{ name: 'p.yaml', text: good }]);
    const desired = targetObject(item!, undefined);
    const current = structuredClone(desired) as ApiObject & { spec: { nodeName?: string } };
    current.metadata = { ...current.metadata, uid: 'u', resourceVersion: '7', creationTimestamp: ago(M), labels: {} };
    current.status = { phase: 'Running' };
    current.spec.nodeName = 'edge-1';
    assert.equal(isUnchanged(keepSystemFields(desired, current), current), true);
    const relabeled = structuredClone(desired);
    relabeled.metadata.labels = { app: 'web' };
    assert.equal(isUnchanged(keepSystemFields(relabeled, current), current), false);
  });

  it('system annotations written by controllers survive a re-apply; user ones do not', () => {
    const [item] = validateSources([{ name: 'p.yaml', text: good }]);
    const desired = targetObject(item!, undefined);
    const current = structuredClone(desired);
    current.metadata.annotations = { 'deployment.kubernetes.io/revision': '2' };
    assert.equal(isUnchanged(keepSystemFields(desired, current), current), true);
    current.metadata.annotations = { note: 'removed from the manifest' };
    assert.equal(isUnchanged(keepSystemFields(desired, current), current), false);
  });

  it("a Secret's stringData compares equal to the stored data", () => {
    const [item] = validateSources([{ name: 's.yaml', text: 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: pw\nstringData:\n  password: hi\n' }]);
    const desired = targetObject(item!, undefined);
    const stored = { ...structuredClone(desired), data: { password: Buffer.from('hi').toString('base64') } } as ApiObject;
    delete stored.stringData;
    assert.equal(isUnchanged(desired, stored), true);
  });
});

describe('command-line parsing', () => {
  it('kinds by plural, singular, short name; kind/name form', () => {
    assert.equal(parseResourceArgs(['po'])[0]!.kind.kind, 'Pod');
    assert.equal(parseResourceArgs(['NODES'])[0]!.kind.kind, 'Node');
    assert.deepEqual(parseResourceArgs(['pod/web', 'pods/db']).map((t) => t.name), ['web', 'db']);
    assert.throws(() => parseResourceArgs(['foo']), /the server doesn't have a resource type "foo"/);
  });
  it('durations', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('2'), 2000);
    assert.equal(parseDuration('1m'), 60_000);
    assert.throws(() => parseDuration('soon'), /invalid duration/);
  });
});

describe('describe text', () => {
  it('pod: containers, state, resources, env, conditions and events', () => {
    const pod = mkPod('web', { node: 'edge-1', hostIP: '10.0.0.7', statuses: [{ state: 'terminated', reason: 'Error', exitCode: 2, ready: false, restartCount: 3, startedAt: '2024-05-01T11:50:00Z' }] });
    pod.metadata.labels = { app: 'web', tier: 'front' };
    pod.spec.containers[0] = { name: 'c0', image: 'busybox', command: ['sh', '-c'], args: ['exit 2'], env: [{ name: 'MODE', value: 'x' }], resources: { limits: { memory: '64Mi' } } };
    pod.status!.conditions = [{ type: 'Ready', status: 'False' }];
    const ev: Event = {
      apiVersion: 'v1', kind: 'Event', metadata: { name: 'e' }, involvedObject: { kind: 'Pod', name: 'web' }, type: 'Warning', reason: 'BackOff',
      message: 'restarting failed container', source: { component: 'agent', host: 'edge-1' }, firstTimestamp: ago(10 * M), lastTimestamp: ago(M), count: 4,
    };
    const out = describePod(pod, [ev], NOW);
    assert.match(out, /^Name: +web\nNamespace: +default\nNode: +edge-1\/10\.0\.0\.7\n/);
    assert.match(out, /\nLabels: +app=web\n +tier=front\n/);
    assert.match(out, /\n    State: +Terminated\n      Reason: +Error\n      Exit Code: +2\n      Started: +Wed, 01 May 2024 11:50:00 \+0000\n/);
    assert.match(out, /\n    Restart Count: +3\n/);
    assert.match(out, /\n    Command:\n      sh\n      -c\n    Args:\n      exit 2\n/);
    assert.match(out, /\n    Limits:\n      memory: +64Mi\n/);
    assert.match(out, /\n    Environment:\n      MODE: +x\n/);
    assert.match(out, /\nConditions:\n  Type +Status\n  Ready +False\n/);
    assert.match(out, /\nEvents:\n  Type +Reason +Age +From +Message\n  ---- +------ +---- +---- +-------\n  Warning +BackOff +60s \(x4 over 10m\) +agent, edge-1 +restarting failed container\n$/);
    // Values in one block share a column.
    const valueCols = new Set(out.split('\n').filter((l) => /^(Name|Namespace|Node):/.test(l)).map((l) => l.search(/\S+$/)));
    assert.equal(valueCols.size, 1);
  });

  it('pod without events says <none>', () => {
    assert.match(describePod(mkPod('web'), [], NOW), /\nEvents: +<none>\n$/);
  });

  it('node: conditions, capacity, system info and its pods', () => {
    const out = describeNode(mkNode('edge-1'), [mkPod('web', { node: 'edge-1' })], [], NOW);
    assert.match(out, /\nCapacity:\n  cpu: +4\n  memory: +8Gi\n  pods: +110\n/);
    assert.match(out, /\n  Architecture: +arm64\n/);
    assert.match(out, /\nNon-terminated Pods: +\(1 in total\)\n/);
    assert.match(out, /\n  default +web +Running +0 +0 +0 +0 +5m\n/);
  });
});

describe('HTTP client', () => {
  let server: Server;
  let url: string;
  before(async () => {
    server = createServer((req, res) => {
      if (req.headers.authorization !== 'Bearer good') {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', message: 'a valid bearer token is required', reason: 'Unauthorized', code: 401 }));
        return;
      }
      if (req.url === '/slow') return; // never answers
      if (req.url === '/warn') {
        res.setHeader('warning', ['299 - "spec.dnsPolicy: ignored"', '299 - "second, with comma"']);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', status: 'Failure', message: 'pods "web" not found', reason: 'NotFound', code: 404 }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('maps Status errors to CliError with the server message', async () => {
    const c = new ApiClient({ server: url, token: 'good' });
    await assert.rejects(c.get('/api/v1/namespaces/default/pods/web'), (e: Error) => e instanceof CliError && e.message === 'pods "web" not found' && e.code === 404);
    assert.equal(await c.getOptional('/api/v1/namespaces/default/pods/web'), undefined);
  });

  it('401 → unauthorized hint', async () => {
    const c = new ApiClient({ server: url, token: 'bad' });
    await assert.rejects(c.get('/api/v1/pods'), /^CliError: unauthorized: check the token \(DROVER_TOKEN or ~\/\.drover\/config\)$/);
  });

  it('passes server warnings on, including several in one header', async () => {
    const warnings: string[] = [];
    await new ApiClient({ server: url, token: 'good', onWarning: (w) => warnings.push(w) }).get('/warn');
    assert.deepEqual(warnings, ['spec.dnsPolicy: ignored', 'second, with comma']);
  });

  it('connection failure and timeout messages', async () => {
    await assert.rejects(new ApiClient({ server: 'http://127.0.0.1:1' }).get('/api/v1/pods'), (e: Error) =>
      e.message.startsWith('cannot reach the drover server at http://127.0.0.1:1: ') && e.message.includes('(is `drover server` running? set DROVER_SERVER)'));
    await assert.rejects(new ApiClient({ server: url, token: 'good', timeoutMs: 200 }).get('/slow'), /did not answer GET \/slow within 0\.2s/);
  });

  it('pure helpers', () => {
    assert.deepEqual(parseWarningHeader('299 - "a \\"quoted\\" word"'), ['a "quoted" word']);
    assert.equal(errorFromResponse(502, '<html>bad gateway</html>').message, 'the server returned HTTP 502: <html>bad gateway</html>');
    assert.throws(() => new ApiClient({ server: 'not a url' }), /invalid server URL/);
  });
});

describe('program', () => {
  it('registers the verbs and throws one-line CliErrors instead of exiting', async () => {
    const out: string[] = [];
    const program = new Command('drover').exitOverride();
    registerCliCommands(program, { stdout: (s) => out.push(s), stderr: (s) => out.push(s), env: {} });
    assert.deepEqual(program.commands.map((c) => c.name()).sort(), [
      'annotate', 'api-resources', 'apply', 'completion', 'cordon', 'create', 'delete', 'describe', 'drain', 'edit', 'exec', 'explain', 'fleet', 'get', 'image', 'kubeconfig', 'label', 'logs', 'node', 'rollout', 'scale', 'set', 'status', 'token', 'top', 'uncordon', 'version',
    ]);
    await assert.rejects(program.parseAsync(['node', 'drover', 'get', 'foo']), /the server doesn't have a resource type "foo"/);
    await assert.rejects(program.parseAsync(['node', 'drover', 'get', 'pods', '--server', 'http://127.0.0.1:1']), /cannot reach the drover server/);
  });
});
