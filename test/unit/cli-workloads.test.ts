import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { KINDS, kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { DaemonSet, Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { apiResourcesTable } from '../../src/cli/api-resources.js';
import { CliError } from '../../src/cli/client.js';
import { bashCompletion, completionTree, zshCompletion } from '../../src/cli/completion.js';
import { planDrain } from '../../src/cli/drain.js';
import { renderAll, WatchPrinter } from '../../src/cli/get.js';
import { applyMetadataChanges, parseMetadataArgs } from '../../src/cli/label.js';
import { LogFollower, splitLines } from '../../src/cli/logs.js';
import { parseTargets } from '../../src/cli/mutate.js';
import { registerCliCommands } from '../../src/cli/program.js';
import { templatesEqual as sameTemplate } from '../../src/api/revisions.js';
import { daemonSetRolloutStatus, deploymentRolloutStatus, historyRows, historyTable, planUndo } from '../../src/cli/rollout.js';
import { parseImageArgs, setImages } from '../../src/cli/set.js';
import { cpuText, memoryText, topNodesTable, topPodsTable } from '../../src/cli/top.js';

const Mi = 1024 * 1024;

function deployment(over: { replicas?: number; generation?: number; status?: Partial<NonNullable<Deployment['status']>>; annotations?: Record<string, string>; image?: string; paused?: boolean } = {}): Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', uid: 'd-uid', generation: over.generation ?? 2, annotations: over.annotations },
    spec: {
      replicas: over.replicas ?? 3,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: over.image ?? 'nginx:1.25' }], restartPolicy: 'Always', terminationGracePeriodSeconds: 30 } },
      strategy: { type: 'RollingUpdate' },
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: 600,
      minReadySeconds: 0,
      ...(over.paused ? { paused: true } : {}),
    },
    status: { observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, unavailableReplicas: 0, ...over.status },
  } as Deployment;
}

function replicaSet(revision: number, image: string, opts: { owner?: string; changeCause?: string; hash?: string } = {}): ReplicaSet {
  const hash = opts.hash ?? `h${revision}`;
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: `web-${hash}`,
      namespace: 'default',
      annotations: { 'deployment.kubernetes.io/revision': String(revision), ...(opts.changeCause ? { 'kubernetes.io/change-cause': opts.changeCause } : {}) },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: opts.owner ?? 'd-uid', controller: true }],
    },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: 'web', 'pod-template-hash': hash } },
      template: { metadata: { labels: { app: 'web', 'pod-template-hash': hash } }, spec: { containers: [{ name: 'web', image }], restartPolicy: 'Always', terminationGracePeriodSeconds: 30 } },
      minReadySeconds: 0,
    },
  } as ReplicaSet;
}

describe('rollout status messages (kubectl DeploymentStatusViewer)', () => {
  it('waits for the spec to be observed first', () => {
    assert.deepEqual(deploymentRolloutStatus(deployment({ generation: 3 })), { message: 'Waiting for deployment spec update to be observed...', done: false });
  });
  it('counts updated, then old pending termination, then available replicas', () => {
    assert.equal(
      deploymentRolloutStatus(deployment({ status: { updatedReplicas: 1, replicas: 4 } })).message,
      'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
    );
    assert.equal(
      deploymentRolloutStatus(deployment({ status: { updatedReplicas: 3, replicas: 4 } })).message,
      'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
    );
    assert.equal(
      deploymentRolloutStatus(deployment({ status: { availableReplicas: 1 } })).message,
      'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...',
    );
  });
  it('done when updated == replicas == available', () => {
    assert.deepEqual(deploymentRolloutStatus(deployment()), { message: 'deployment "web" successfully rolled out', done: true });
  });
  it('an exceeded progress deadline is an error', () => {
    const d = deployment({ status: { updatedReplicas: 0, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] } });
    assert.equal(deploymentRolloutStatus(d).error, 'deployment "web" exceeded its progress deadline');
  });
  it('daemon sets', () => {
    const ds = (status: Partial<NonNullable<DaemonSet['status']>>, generation = 1): DaemonSet =>
      ({
        apiVersion: 'apps/v1',
        kind: 'DaemonSet',
        metadata: { name: 'agentd', generation },
        spec: { updateStrategy: { type: 'RollingUpdate' } },
        status: { observedGeneration: 1, desiredNumberScheduled: 2, currentNumberScheduled: 2, numberReady: 2, updatedNumberScheduled: 2, numberAvailable: 2, numberMisscheduled: 0, ...status },
      }) as unknown as DaemonSet;
    assert.equal(daemonSetRolloutStatus(ds({}, 2)).message, 'Waiting for daemon set spec update to be observed...');
    assert.equal(daemonSetRolloutStatus(ds({ updatedNumberScheduled: 1 })).message, 'Waiting for daemon set "agentd" rollout to finish: 1 out of 2 new pods have been updated...');
    assert.equal(daemonSetRolloutStatus(ds({ numberAvailable: 0 })).message, 'Waiting for daemon set "agentd" rollout to finish: 0 of 2 updated pods are available...');
    assert.deepEqual(daemonSetRolloutStatus(ds({})), { message: 'daemon set "agentd" successfully rolled out', done: true });
  });
});

describe('rollout history and undo', () => {
  const d = deployment({ image: 'nginx:1.26', annotations: { 'deployment.kubernetes.io/revision': '3', 'kubernetes.io/change-cause': 'bump to 1.26' } });
  const rss = [replicaSet(3, 'nginx:1.26'), replicaSet(1, 'nginx:1.24', { changeCause: 'first' }), replicaSet(2, 'nginx:1.25'), replicaSet(7, 'other', { owner: 'someone-else' })];

  it('rows: owned revisions in order; the current one falls back to the Deployment change-cause', () => {
    assert.deepEqual(historyRows(d, rss), [
      { revision: 1, changeCause: 'first' },
      { revision: 2, changeCause: undefined },
      { revision: 3, changeCause: 'bump to 1.26' },
    ]);
    assert.equal(
      historyTable(kindInfo('Deployment'), 'web', historyRows(d, rss)),
      'deployment.apps/web\nREVISION   CHANGE-CAUSE\n1          first\n2          <none>\n3          bump to 1.26\n',
    );
  });

  it('undo picks the previous revision and strips pod-template-hash', () => {
    const plan = planUndo(d, rss);
    assert.equal(plan.action, 'rollback');
    if (plan.action !== 'rollback') return;
    assert.equal(plan.revision, 2);
    assert.deepEqual(plan.template.metadata?.labels, { app: 'web' });
    assert.equal(plan.template.spec.containers[0]!.image, 'nginx:1.25');
  });

  it('--to-revision, a missing revision, the current template (skip), no history', () => {
    const to1 = planUndo(d, rss, 1);
    assert.equal(to1.action === 'rollback' && to1.changeCause, 'first');
    assert.throws(() => planUndo(d, rss, 7), (e: Error) => e instanceof CliError && /unable to find specified revision 7 in history/.test(e.message));
    assert.deepEqual(planUndo(d, rss, 3), { action: 'skip', revision: 3 });
    const fresh = deployment({ annotations: { 'deployment.kubernetes.io/revision': '1' } });
    assert.throws(() => planUndo(fresh, [replicaSet(1, 'nginx:1.25')]), /no rollout history found for deployment "web"/);
  });

  it('templates compare without the hash label', () => {
    assert.ok(sameTemplate(rss[2]!.spec.template, deployment().spec.template));
    assert.ok(!sameTemplate(rss[0]!.spec.template, deployment().spec.template));
  });
});

function pod(name: string, opts: { owner?: string; phase?: Pod['status'] extends infer S ? S extends { phase?: infer P } ? P : never : never; emptyDir?: boolean; deleting?: boolean; ns?: string } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: opts.ns ?? 'default',
      ...(opts.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: opts.owner, name: 'x', uid: 'u', controller: true }] } : {}),
      ...(opts.deleting ? { deletionTimestamp: '2024-01-01T00:00:00Z' } : {}),
    },
    spec: { nodeName: 'edge-1', containers: [{ name: 'c', image: 'i' }], ...(opts.emptyDir ? { volumes: [{ name: 'scratch', emptyDir: {} }] } : {}) },
    status: { phase: opts.phase ?? 'Running' },
  } as Pod;
}

describe('drain pod classification', () => {
  const pods = [
    pod('rs-pod', { owner: 'ReplicaSet' }),
    pod('job-pod', { owner: 'Job' }),
    pod('ds-pod', { owner: 'DaemonSet', ns: 'kube-system' }),
    pod('bare'),
    pod('bare-done', { phase: 'Succeeded' }),
    pod('scratchy', { owner: 'ReplicaSet', emptyDir: true }),
    pod('going', { deleting: true }),
  ];
  const names = (ps: Pod[]) => ps.map((p) => p.metadata.name);

  it('without flags: refuses, naming each blocked pod', () => {
    const plan = planDrain(pods, {});
    assert.deepEqual(plan.errors, [
      'cannot delete Pods that declare no controller (use --force to override): default/bare',
      'cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/ds-pod',
      'cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratchy',
    ]);
  });

  it('with the flags: evicts all but DaemonSet pods and those already going, with warnings', () => {
    const plan = planDrain(pods, { force: true, ignoreDaemonsets: true, deleteEmptydirData: true });
    assert.deepEqual(plan.errors, []);
    assert.deepEqual(names(plan.evict), ['rs-pod', 'job-pod', 'bare', 'bare-done', 'scratchy']);
    assert.deepEqual(names(plan.ignored), ['ds-pod']);
    assert.deepEqual(plan.warnings, ['ignoring DaemonSet-managed Pods: kube-system/ds-pod', 'deleting Pods that declare no controller: default/bare']);
  });

  it('finished pods need neither --force nor --delete-emptydir-data', () => {
    const plan = planDrain([pod('done', { phase: 'Failed', emptyDir: true })], {});
    assert.deepEqual(plan.errors, []);
    assert.deepEqual(names(plan.evict), ['done']);
  });
});

describe('top formatting', () => {
  const node = (name: string, usage?: { cpuMilli: number; memoryBytes: number }, alloc = { cpu: '4', memory: String(8 * 1024 * Mi), pods: '110' }): Node =>
    ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: {}, status: { allocatable: alloc, ...(usage ? { usage: { ...usage, ts: '2024-01-01T00:00:00Z' } } : {}) } }) as Node;

  it('units as kubectl: millicores and Mi', () => {
    assert.equal(cpuText(250), '250m');
    assert.equal(cpuText(0.4), '0m');
    assert.equal(memoryText(300 * Mi + 5), '300Mi');
    // An idle pod under 1 MiB: its real size, not kubectl's 0Mi for every small pod.
    assert.equal(memoryText(253_952), '248Ki');
    assert.equal(memoryText(100), '1Ki');
    assert.equal(memoryText(0), '0Mi');
  });

  it('nodes: percent of allocatable; unmeasured nodes last with <unknown>; none measured → undefined', () => {
    const table = topNodesTable([node('b'), node('a', { cpuMilli: 1000, memoryBytes: 2048 * Mi })]);
    assert.equal(
      table,
      'NAME   CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%\n' +
        'a      1000m        25%         2048Mi          25%\n' +
        'b      <unknown>    <unknown>   <unknown>       <unknown>\n',
    );
    assert.equal(topNodesTable([node('a'), node('b')]), undefined);
    // Allocatable in other units, or missing.
    assert.match(topNodesTable([node('a', { cpuMilli: 500, memoryBytes: Mi }, { cpu: '2000m', memory: '1Gi', pods: '1' })])!, /^a +500m +25% +1Mi +0%$/m);
  });

  it('pods: only measured ones; NAMESPACE with -A; sort by cpu', () => {
    const p = (name: string, cpuMilli?: number, memoryBytes = 10 * Mi): Pod =>
      ({ ...pod(name), status: { phase: 'Running', ...(cpuMilli !== undefined ? { usage: { cpuMilli, memoryBytes, ts: 'x' } } : {}) } }) as unknown as Pod;
    assert.equal(topPodsTable([p('a', 5), p('b')]), 'NAME   CPU(cores)   MEMORY(bytes)\na      5m           10Mi\n');
    assert.equal(topPodsTable([p('b')]), undefined);
    const sorted = topPodsTable([p('a', 5), p('c', 50)], { allNamespaces: true, sortBy: 'cpu' })!;
    assert.deepEqual(sorted.trimEnd().split('\n').map((l) => l.split(/\s+/)[1]), ['NAME', 'c', 'a']);
  });
});

describe('completion script', () => {
  const program = new Command('drover');
  program.command('server').option('--data-dir <dir>');
  registerCliCommands(program, { stdout: () => {}, stderr: () => {}, env: {} });
  const tree = completionTree(program);
  const script = bashCompletion(tree);

  it('lists verbs, subcommands, kinds and per-command flags', () => {
    const verbs = tree.subcommands.map((c) => c.names[0]);
    for (const v of ['get', 'apply', 'delete', 'describe', 'logs', 'scale', 'set', 'rollout', 'cordon', 'uncordon', 'drain', 'top', 'api-resources', 'completion', 'server']) {
      assert.ok(verbs.includes(v), v);
    }
    assert.match(script, /"rollout"\) echo "status history undo pause resume restart"/);
    assert.match(script, /"top\|node"\|"top\|nodes"\|"top\|no"\) echo "top node"/);
    assert.match(script, /"get\|-n"\|"get\|--namespace"\|/);
    assert.match(script, /"rollout status\|-w"\|"rollout status\|--watch"/);
    assert.doesNotMatch(script, /"get\|-w"/, 'get -w takes no value');
    for (const k of KINDS) assert.ok(script.includes(k.plural), k.plural);
    assert.match(script, /get "\$2" -n "\$__drover_ns" -o name/);
    assert.match(script, /^complete -F _drover drover$/m);
    assert.match(zshCompletion(tree), /^#compdef drover\n[\s\S]*bashcompinit[\s\S]*complete -F _drover drover/);
  });

  it('completes in bash: verbs, kinds, names, namespaces', async (t) => {
    try {
      execFileSync('bash', ['--version']);
    } catch {
      t.skip('no bash');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'drover-completion-'));
    try {
      const file = join(dir, 'drover.bash');
      await writeFile(file, script);
      const stub = join(dir, 'stub');
      // Stands in for `drover get KIND [-n NS] -o name`.
      await writeFile(stub, '#!/bin/sh\ncase "$2" in\n  namespaces) echo namespace/default; echo namespace/prod ;;\n  deployment*) echo deployment.apps/web ;;\n  pods) echo "pod/web-$4" ;;\n  nodes) echo node/edge-1 ;;\nesac\n');
      await chmod(stub, 0o755);
      const complete = (...words: string[]): string =>
        execFileSync('bash', ['-c', `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _drover "$STUB" "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"; echo "\${COMPREPLY[*]}"`, file, ...words], {
          env: { ...process.env, STUB: stub },
          encoding: 'utf8',
        }).trim();
      assert.equal(complete('drover', 'ro'), 'rollout');
      assert.equal(complete('drover', 'rollout', 'st'), 'status');
      assert.equal(complete('drover', 'rollout', 'status', ''), 'deployment daemonset');
      assert.equal(complete('drover', 'rollout', 'status', 'deployment/'), 'deployment/web');
      assert.equal(complete('drover', 'get', 'deploy'), 'deployment deployments');
      assert.equal(complete('drover', 'get', '-n', ''), 'default prod');
      assert.equal(complete('drover', 'get', 'pods', '-n', 'prod', ''), 'web-prod');
      assert.equal(complete('drover', 'drain', ''), 'edge-1');
      assert.equal(complete('drover', 'get', '-o', ''), 'json yaml wide name');
      assert.equal(complete('drover', 'get', '--watch-o'), '--watch-only');
      assert.equal(complete('drover', 'completion', ''), 'bash zsh');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('get -w printer', () => {
  const now = Date.parse('2024-05-01T12:00:00Z');
  const p = (name: string, phase: string): ApiObject =>
    ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, creationTimestamp: '2024-05-01T11:59:50Z' }, spec: { containers: [{ name: 'c', image: 'i' }] }, status: { phase } }) as ApiObject;

  it('header once, later rows aligned to the first batch', () => {
    const w = new WatchPrinter(kindInfo('Pod'), undefined, { now: () => now });
    const first = w.print([p('web', 'Running')]);
    assert.equal(first, 'NAME   READY   STATUS    RESTARTS   AGE\nweb    0/1     Running   0          10s\n');
    assert.equal(w.print([p('a-much-longer-name', 'Pending')]), 'a-much-longer-name   0/1     Pending   0          10s\n');
    assert.equal(w.print([]), '');
  });

  it('json and name print each object; yaml separates documents', () => {
    assert.equal(new WatchPrinter(kindInfo('Pod'), 'name').print([p('a', 'Running'), p('b', 'Running')]), 'pod/a\npod/b\n');
    // -w with --show-labels and --no-headers, as kubectl takes them.
    const labelled = new WatchPrinter(kindInfo('Pod'), undefined, { now: () => now, showLabels: true, noHeaders: true }).print([p('a', 'Running')]);
    assert.match(labelled, /^a\s+.*\s+<none>\n$/);
    const y = new WatchPrinter(kindInfo('Pod'), 'yaml');
    assert.doesNotMatch(y.print([p('a', 'Running')]), /^---/);
    assert.match(y.print([p('b', 'Running')]), /^---\napiVersion: v1\n/);
    assert.equal(JSON.parse(new WatchPrinter(kindInfo('Pod'), 'json').print([p('a', 'Running')])).metadata.name, 'a');
  });
});

describe('logs -f dedupe', () => {
  it('prints only lines past those already printed; a partial line waits for its newline', () => {
    const f = new LogFollower();
    assert.equal(f.start('a\nb\nc\n', 2), 'b\nc\n');
    assert.equal(f.next('a\nb\nc\n'), '');
    assert.equal(f.next('a\nb\nc\nd\npart'), 'd\n');
    assert.equal(f.next('a\nb\nc\nd\npartial\n'), 'partial\n');
    assert.equal(f.finish('a\nb\nc\nd\npartial\nlast'), 'last\n');
  });
  it('a shorter log (container re-created) starts over; --tail 0 shows nothing at first', () => {
    const f = new LogFollower();
    assert.equal(f.start('a\nb\n', 0), '');
    assert.equal(f.next('x\n'), 'x\n');
    assert.deepEqual(splitLines('a\nb'), { lines: ['a'], partial: 'b' });
  });
});

describe('set image and targets', () => {
  it('parses resources then CONTAINER=IMAGE pairs', () => {
    assert.deepEqual(parseImageArgs(['deployment/web', 'web=nginx:1.25', 'side=busybox']), {
      resources: ['deployment/web'],
      images: new Map([['web', 'nginx:1.25'], ['side', 'busybox']]),
    });
    assert.throws(() => parseImageArgs(['deployment/web']), /at least one image update is required/);
    assert.throws(() => parseImageArgs(['web=x']), /one or more resources must be specified/);
    assert.throws(() => parseImageArgs(['deploy', 'web=x', 'api']), /all resources must be specified before image changes/);
  });
  it('sets images by container name or *; an unknown container is named', () => {
    const d = deployment() as unknown as ApiObject;
    assert.equal(setImages(d, new Map([['web', 'nginx:2']])), true);
    assert.equal(setImages(d, new Map([['web', 'nginx:2']])), false);
    assert.equal(setImages(d, new Map([['*', 'nginx:3']])), true);
    assert.equal((d as unknown as Deployment).spec.template.spec.containers[0]!.image, 'nginx:3');
    assert.throws(() => setImages(d, new Map([['nope', 'x']])), /^CliError: unable to find container named "nope"$|unable to find container named "nope"/);
  });
  it('targets: kinds the verb supports, names required', () => {
    assert.deepEqual(parseTargets(['deploy', 'web', 'api'], 'scale', ['Deployment']).map((t) => t.name), ['web', 'api']);
    assert.throws(() => parseTargets(['pod/web'], 'scale', ['Deployment', 'ReplicaSet']), /scale is not supported for pods \(supported: deployments, replicasets\)/);
    assert.throws(() => parseTargets(['deployment'], 'scale', ['Deployment']), /no name was specified/);
  });
});

describe('api-resources', () => {
  it('core group first, then by group; filters; names', () => {
    const table = apiResourcesTable(KINDS);
    const lines = table.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME +SHORTNAMES +APIVERSION +NAMESPACED +KIND$/);
    assert.match(lines[1]!, /^configmaps +cm +v1 +true +ConfigMap$/);
    assert.ok(lines.some((l) => /^jobs +batch\/v1 +true +Job$/.test(l)), table);
    const groups = lines.slice(1).map((l) => l.trim().split(/ +/).at(-3)!);
    assert.deepEqual(groups.filter((g) => g === 'v1'), groups.slice(0, groups.filter((g) => g === 'v1').length), 'core group first');
    assert.equal(apiResourcesTable(KINDS, { namespaced: false, output: 'name' }), 'namespaces\nnodes\n');
    assert.match(apiResourcesTable(KINDS, { output: 'name' }), /^deployments\.apps$/m);
  });
});

describe('label and annotate', () => {
  it('parses KEY=VALUE and KEY- after the resources', () => {
    const { resources, changes } = parseMetadataArgs(['deploy', 'web', 'app=web', 'empty=', 'old-'], 'label');
    assert.deepEqual(resources, ['deploy', 'web']);
    assert.deepEqual([...changes.set], [['app', 'web'], ['empty', '']]);
    assert.deepEqual(changes.remove, ['old']);
    assert.throws(() => parseMetadataArgs(['pod/web'], 'label'), /at least one label update is required/);
    assert.throws(() => parseMetadataArgs(['a=1', 'a-', 'pod/web'], 'annotation'), /all resources must be specified before annotation changes/);
    assert.throws(() => parseMetadataArgs(['pod/web', 'a=1', 'a-'], 'label'), /can not both modify and remove the label "a"/);
  });
  it('refuses to change an existing value without --overwrite; reports no-ops', () => {
    assert.throws(() => applyMetadataChanges({ a: '1' }, { set: new Map([['a', '2']]), remove: [] }, false), /'a' already has a value \(1\), and --overwrite is false/);
    assert.deepEqual(applyMetadataChanges({ a: '1' }, { set: new Map([['a', '2']]), remove: [] }, true), { next: { a: '2' }, changed: true });
    assert.deepEqual(applyMetadataChanges({ a: '1' }, { set: new Map([['a', '1']]), remove: ['b'] }, false), { next: { a: '1' }, changed: false });
    assert.deepEqual(applyMetadataChanges({ a: '1' }, { set: new Map(), remove: ['a'] }, false), { next: undefined, changed: true });
  });
});

describe('get all', () => {
  it('one table per kind with objects, names qualified; name output', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    const created = '2024-05-01T11:00:00Z';
    const p = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', creationTimestamp: created }, spec: { containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Running' } } as ApiObject;
    const d = { ...(deployment() as unknown as ApiObject), metadata: { name: 'web', creationTimestamp: created } } as ApiObject;
    const lists = [
      { kind: kindInfo('Pod'), items: [p] },
      { kind: kindInfo('DaemonSet'), items: [] },
      { kind: kindInfo('Deployment'), items: [d] },
    ];
    assert.equal(
      renderAll(lists, undefined, { now }),
      'NAME        READY   STATUS    RESTARTS   AGE\npod/web-1   0/1     Running   0          60m\n\n' +
        'NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\ndeployment.apps/web   3/3     3            3           60m\n',
    );
    assert.equal(renderAll(lists, 'name'), 'pod/web-1\ndeployment.apps/web\n');
    assert.equal(JSON.parse(renderAll(lists, 'json')).items.length, 2);
  });
});
