/**
 * How the agent turns a pod's config into a runtime request: env resolution, the spec hash, volumes
 * as mounts, devices, image pull policy, and how it all shows in the plan and the reports.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { applyPlan } from '../../agent/engine/apply.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { configLookup, ConfigError, expandVars, resolveEnv, type RunContext } from '../../agent/engine/env.js';
import { LABELS } from '../../agent/engine/naming.js';
import { plan, toRunSpec, type PlanContext } from '../../agent/engine/plan.js';
import { containerSpecHash } from '../../agent/engine/spec-hash.js';
import { podReports, type ReportView } from '../../agent/engine/report.js';
import { mountsFor, volumeDir, volumeFiles } from '../../agent/engine/volume-layout.js';
import { listDevices } from '../../agent/hardware.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { VolumeManager, writeVolumeFiles } from '../../agent/volume-manager.js';
import type { Container } from '../../src/api/pod.js';
import type { AgentEvent, Desired, DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';

const NODE = 'edge-1';
const T0 = Date.parse('2024-05-01T12:00:00Z');
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function mkPod(containers: Array<Partial<Container> & { name: string }>, o: Partial<DesiredPod['spec']> = {}): DesiredPod {
  return {
    uid: 'uid-web-0000-1111',
    namespace: 'default',
    name: 'web',
    spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 10, nodeName: NODE, ...o, containers: containers.map((c) => ({ image: 'localhost/app:1', ...c })) },
  };
}

function config(cms: Record<string, Record<string, string>>, secrets: Record<string, Record<string, string>> = {}): Pick<Desired, 'configMaps' | 'secrets'> {
  return {
    configMaps: Object.entries(cms).map(([name, data]) => ({ namespace: 'default', name, data })),
    secrets: Object.entries(secrets).map(([name, data]) => ({ namespace: 'default', name, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) })),
  };
}

const ctxWith = (d: Pick<Desired, 'configMaps' | 'secrets'>, extra: Partial<RunContext> = {}): RunContext => ({ config: configLookup(d), stateDir: '/var/lib/drover/agent', hostIP: '192.0.2.7', ...extra });

describe('env resolution', () => {
  const cfg = config({ app: { greeting: 'hello', LEVEL: 'debug', 'bad key': 'x' } }, { db: { password: 's3cret', USER: 'admin' } });

  it('resolves value, configMapKeyRef, secretKeyRef and fieldRef; later entries win', () => {
    const pod = mkPod([
      {
        name: 'c',
        env: [
          { name: 'PLAIN', value: 'v' },
          { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'app', key: 'greeting' } } },
          { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
          { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'NS', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
          { name: 'UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
          { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
          { name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
          { name: 'PLAIN', value: 'v2' },
        ],
      },
    ]);
    assert.deepEqual(resolveEnv(pod, pod.spec.containers[0]!, NODE, ctxWith(cfg)), {
      PLAIN: 'v2',
      GREETING: 'hello',
      PASSWORD: 's3cret',
      POD: 'web',
      NS: 'default',
      UID: pod.uid,
      NODE: NODE,
      HOST_IP: '192.0.2.7',
    });
  });

  it('envFrom with prefix, skipping invalid names; env overrides envFrom; $(VAR) expands', () => {
    const pod = mkPod([
      {
        name: 'c',
        envFrom: [{ configMapRef: { name: 'app' }, prefix: 'APP_' }, { secretRef: { name: 'db' } }, { configMapRef: { name: 'absent', optional: true } }],
        env: [
          { name: 'USER', value: 'override' },
          { name: 'URL', value: 'db://$(USER):$(password)@host/$(UNDEFINED)?$$(USER)' },
        ],
      },
    ]);
    assert.deepEqual(resolveEnv(pod, pod.spec.containers[0]!, NODE, ctxWith(cfg)), {
      APP_greeting: 'hello',
      APP_LEVEL: 'debug',
      password: 's3cret',
      USER: 'override',
      URL: 'db://override:s3cret@host/$(UNDEFINED)?$(USER)',
    });
    assert.equal(expandVars('$(A)-$$-$(B', { A: 'a' }), 'a-$-$(B');
  });

  it('honours optional; a missing required ConfigMap, key or Secret is a ConfigError naming it', () => {
    const env = (e: Container['env']) => {
      const pod = mkPod([{ name: 'c', env: e }]);
      return () => resolveEnv(pod, pod.spec.containers[0]!, NODE, ctxWith(cfg));
    };
    assert.deepEqual(env([{ name: 'X', valueFrom: { configMapKeyRef: { name: 'app', key: 'nope', optional: true } } }, { name: 'Y', valueFrom: { secretKeyRef: { name: 'gone', key: 'k', optional: true } } }])(), {});
    const cases: Array<[Container['env'], RegExp]> = [
      [[{ name: 'X', valueFrom: { configMapKeyRef: { name: 'app', key: 'nope' } } }], /^couldn't find key nope in ConfigMap default\/app$/],
      [[{ name: 'X', valueFrom: { configMapKeyRef: { name: 'missing', key: 'k' } } }], /^configmap "missing" not found$/],
      [[{ name: 'X', valueFrom: { secretKeyRef: { name: 'db', key: 'nope' } } }], /^couldn't find key nope in Secret default\/db$/],
      [[{ name: 'X', valueFrom: { secretKeyRef: { name: 'missing', key: 'k' } } }], /^secret "missing" not found$/],
      [[{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'metadata.labels' } } }], /unsupported fieldRef/],
    ];
    for (const [e, msg] of cases) assert.throws(env(e), (err: unknown) => err instanceof ConfigError && msg.test(err.message));
    const pod = mkPod([{ name: 'c', envFrom: [{ secretRef: { name: 'missing' } }] }]);
    assert.throws(() => resolveEnv(pod, pod.spec.containers[0]!, NODE, ctxWith(cfg)), /secret "missing" not found/);
  });
});

describe('spec hash and ConfigMaps', () => {
  const pod = mkPod([
    {
      name: 'c',
      env: [{ name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'app', key: 'greeting' } } }],
      envFrom: [{ secretRef: { name: 'db' } }],
      volumeMounts: [{ name: 'conf', mountPath: '/etc/app' }],
    },
  ], { volumes: [{ name: 'conf', configMap: { name: 'app' } }] });

  it('does not change when a referenced ConfigMap or Secret value changes', () => {
    const a = toRunSpec(pod, 'c', NODE, ctxWith(config({ app: { greeting: 'hello' } }, { db: { P: '1' } })));
    const b = toRunSpec(pod, 'c', NODE, ctxWith(config({ app: { greeting: 'bonjour' } }, { db: { P: '2' } })));
    assert.equal(a.env.GREETING, 'hello');
    assert.equal(b.env.GREETING, 'bonjour');
    assert.equal(a.labels[LABELS.specHash], b.labels[LABELS.specHash]);
    assert.equal(a.labels[LABELS.specHash], containerSpecHash(pod, 'c'), 'the hash needs no resolution');
  });

  it('changes when the pod spec changes what is referenced or mounted', () => {
    const base = containerSpecHash(pod, 'c');
    const variants = [
      mkPod([{ ...pod.spec.containers[0]!, env: [{ name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'app', key: 'other' } } }] }], { volumes: pod.spec.volumes }),
      mkPod([{ ...pod.spec.containers[0]!, envFrom: [{ secretRef: { name: 'db2' } }] }], { volumes: pod.spec.volumes }),
      mkPod([{ ...pod.spec.containers[0]!, volumeMounts: [{ name: 'conf', mountPath: '/etc/other' }] }], { volumes: pod.spec.volumes }),
      mkPod([pod.spec.containers[0]!], { volumes: [{ name: 'conf', configMap: { name: 'app', defaultMode: 0o600 } }] }),
      mkPod([{ ...pod.spec.containers[0]!, devices: [{ hostPath: '/dev/ttyUSB0' }] }], { volumes: pod.spec.volumes }),
    ];
    for (const v of variants) assert.notEqual(containerSpecHash(v, 'c'), base, JSON.stringify(v.spec));
    // Probes and the pull policy do not re-create.
    const probed = mkPod([{ ...pod.spec.containers[0]!, imagePullPolicy: 'Always', readinessProbe: { exec: { command: ['true'] }, initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 } }], { volumes: pod.spec.volumes });
    assert.equal(containerSpecHash(probed, 'c'), base);
  });
});

describe('volumes and devices in the RunSpec', () => {
  const pod = mkPod(
    [
      {
        name: 'c',
        volumeMounts: [
          { name: 'host', mountPath: '/host' },
          { name: 'host-ro', mountPath: '/host-ro', readOnly: true },
          { name: 'scratch', mountPath: '/scratch' },
          { name: 'conf', mountPath: '/etc/app' },
          { name: 'creds', mountPath: '/run/secrets/db' },
          { name: 'scratch', mountPath: '/sub', subPath: 'a/b' },
          { name: 'default-empty', mountPath: '/tmp/x' },
        ],
        devices: [{ hostPath: '/dev/ttyUSB0', containerPath: '/dev/modem', permissions: 'rw' }, { hostPath: '/dev/gpiochip0' }],
      },
    ],
    {
      volumes: [
        { name: 'host', hostPath: { path: '/srv/data' } },
        { name: 'host-ro', hostPath: { path: '/srv/ro' } },
        { name: 'scratch', emptyDir: {} },
        { name: 'conf', configMap: { name: 'app' } },
        { name: 'creds', secret: { secretName: 'db' } },
        { name: 'default-empty' },
      ],
    },
  );

  it('maps every volume kind to a bind mount; configMap and secret are read-only', () => {
    const spec = toRunSpec(pod, 'c', NODE, ctxWith(config({})));
    const dir = (v: string) => volumeDir('/var/lib/drover/agent', pod.uid, v);
    assert.deepEqual(spec.mounts, [
      { source: '/srv/data', target: '/host', readOnly: false },
      { source: '/srv/ro', target: '/host-ro', readOnly: true },
      { source: dir('scratch'), target: '/scratch', readOnly: false },
      { source: dir('conf'), target: '/etc/app', readOnly: true },
      { source: dir('creds'), target: '/run/secrets/db', readOnly: true },
      { source: join(dir('scratch'), 'a/b'), target: '/sub', readOnly: false, beneath: dir('scratch') },
      { source: dir('default-empty'), target: '/tmp/x', readOnly: false },
    ]);
    assert.equal(dir('conf'), `/var/lib/drover/agent/pods/${pod.uid}/volumes/conf`);
    assert.deepEqual(spec.devices, [
      { hostPath: '/dev/ttyUSB0', containerPath: '/dev/modem', permissions: 'rw' },
      { hostPath: '/dev/gpiochip0', containerPath: undefined, permissions: undefined },
    ]);
  });

  it('refuses a subPath leaving the volume, and reports a volume that could not be prepared', () => {
    const bad = mkPod([{ name: 'c', volumeMounts: [{ name: 's', mountPath: '/x', subPath: '../../etc' }] }], { volumes: [{ name: 's', emptyDir: {} }] });
    assert.throws(() => mountsFor(bad, bad.spec.containers[0]!, { stateDir: '/s' }), (e: unknown) => e instanceof ConfigError && /subPath/.test(e.message));
    assert.throws(() => toRunSpec(pod, 'c', NODE, ctxWith(config({}), { volumeError: (_u, v) => (v === 'conf' ? 'configmap "app" not found' : undefined) })), /volume "conf": configmap "app" not found/);
  });

  it('lists the files of configMap and secret volumes: keys or items, modes, missing keys', () => {
    const cfg = ctxWith({
      configMaps: [{ namespace: 'default', name: 'app', data: { 'app.conf': 'k=v\n', other: 'o' }, binaryData: { 'logo.bin': Buffer.from([0, 1, 2]).toString('base64') } }],
      secrets: [{ namespace: 'default', name: 'db', data: { password: b64('pw') } }],
    });
    const v = (x: object) => ({ name: 'v', ...x }) as never;
    const all = volumeFiles(pod, v({ configMap: { name: 'app' } }), cfg)!;
    assert.deepEqual(all.map((f) => [f.path, f.data.toString('hex'), f.mode.toString(8)]), [
      ['app.conf', Buffer.from('k=v\n').toString('hex'), '644'],
      ['logo.bin', '000102', '644'],
      ['other', Buffer.from('o').toString('hex'), '644'],
    ]);
    const items = volumeFiles(pod, v({ configMap: { name: 'app', defaultMode: 0o640, items: [{ key: 'app.conf', path: 'conf/app.conf' }, { key: 'other', path: 'o.txt', mode: 0o600 }] } }), cfg)!;
    assert.deepEqual(items.map((f) => [f.path, f.mode.toString(8)]), [['conf/app.conf', '640'], ['o.txt', '600']]);
    const sec = volumeFiles(pod, v({ secret: { secretName: 'db' } }), cfg)!;
    assert.deepEqual(sec.map((f) => [f.path, f.data.toString(), f.mode.toString(8)]), [['password', 'pw', '400']]);
    assert.equal(volumeFiles(pod, v({ configMap: { name: 'absent', optional: true } }), cfg), undefined);
    assert.throws(() => volumeFiles(pod, v({ configMap: { name: 'absent' } }), cfg), /configmap "absent" not found/);
    assert.throws(() => volumeFiles(pod, v({ configMap: { name: 'app', items: [{ key: 'nope', path: 'x' }] } }), cfg), /couldn't find key nope in ConfigMap default\/app/);
    assert.throws(() => volumeFiles(pod, v({ configMap: { name: 'app', items: [{ key: 'other', path: '../escape' }] } }), cfg), /relative path inside the volume/);
  });
});

describe('volume files on disk', () => {
  it('writes files with their modes, rewrites changed ones in place and removes stale ones', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-vol-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const target = join(dir, 'v');
    const f = (path: string, data: string, mode = 0o644) => ({ path, data: Buffer.from(data), mode });
    assert.equal(await writeVolumeFiles(target, [f('a', '1'), f('sub/b', '2', 0o400)]), 2);
    assert.equal(await readFile(join(target, 'sub/b'), 'utf8'), '2');
    assert.equal((await stat(join(target, 'sub/b'))).mode & 0o777, 0o400);
    assert.equal(await writeVolumeFiles(target, [f('a', '1'), f('sub/b', '2', 0o400)]), 0, 'unchanged: nothing written');
    const inode = (await stat(join(target, 'a'))).ino;
    assert.equal(await writeVolumeFiles(target, [f('a', 'changed')]), 2);
    assert.equal(await readFile(join(target, 'a'), 'utf8'), 'changed');
    assert.notEqual((await stat(join(target, 'a'))).ino, inode, 'replaced by rename (atomic for readers)');
    assert.deepEqual(await readdir(target), ['a'], 'stale file and its empty directory removed');
  });

  it('never writes through a directory a container turned into a symbolic link (the files would land anywhere on the host)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-vol-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const target = join(dir, 'v');
    const victim = join(dir, 'host-dir');
    await mkdir(join(target), { recursive: true });
    await mkdir(victim);
    await symlink(victim, join(target, 'sub'));
    await assert.rejects(writeVolumeFiles(target, [{ path: 'sub/evil', data: Buffer.from('* * * * * root pwned'), mode: 0o644 }]), /sub is a symbolic link/);
    assert.deepEqual(await readdir(victim), [], 'nothing written into the link target');
  });

  it('VolumeManager prepares volumes, records failures, and removes pods that are gone', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-vm-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const vm = new VolumeManager(dir, silentLogger);
    const pod = mkPod([{ name: 'c' }], {
      volumes: [
        { name: 'scratch', emptyDir: {} },
        { name: 'conf', configMap: { name: 'app' } },
        { name: 'missing', configMap: { name: 'nope' } },
        { name: 'mk', hostPath: { path: join(dir, 'host/created'), type: 'DirectoryOrCreate' } },
        { name: 'must', hostPath: { path: join(dir, 'host/absent'), type: 'Directory' } },
        { name: 'untyped', hostPath: { path: join(dir, 'host/untyped') } },
      ],
    });
    await vm.sync([pod], ctxWith(config({ app: { k: 'v1' } }), { stateDir: dir }));
    assert.equal((await stat(volumeDir(dir, pod.uid, 'scratch'))).mode & 0o777, 0o777);
    assert.equal(await readFile(join(volumeDir(dir, pod.uid, 'conf'), 'k'), 'utf8'), 'v1');
    assert.ok((await stat(join(dir, 'host/created'))).isDirectory());
    assert.ok((await stat(join(dir, 'host/untyped'))).isDirectory(), 'no type: created as a directory, as containerd does');
    assert.equal(vm.error(pod.uid, 'missing'), 'configmap "nope" not found');
    assert.match(vm.error(pod.uid, 'must') ?? '', /is not a directory/);
    assert.equal(vm.error(pod.uid, 'conf'), undefined);

    await writeFile(join(volumeDir(dir, pod.uid, 'scratch'), 'data'), 'x');
    await vm.sync([pod], ctxWith(config({ app: { k: 'v2' } }), { stateDir: dir }));
    assert.equal(await readFile(join(volumeDir(dir, pod.uid, 'conf'), 'k'), 'utf8'), 'v2');
    assert.equal(await readFile(join(volumeDir(dir, pod.uid, 'scratch'), 'data'), 'utf8'), 'x', 'emptyDir content survives a sync');

    // Gone from the target but a container is left: kept; no container either: removed.
    const leftover: RuntimeContainer = { id: 'x', name: 'x', image: 'i', state: 'exited', labels: { [LABELS.podUid]: pod.uid } };
    await mkdir(join(dir, 'pods', 'other-uid'), { recursive: true });
    await vm.cleanup([], [leftover]);
    assert.deepEqual((await readdir(join(dir, 'pods'))).sort(), [pod.uid]);
    await vm.cleanup([], []);
    assert.deepEqual(await readdir(join(dir, 'pods')), []);
  });
});

describe('plan and reports with config, volumes and pull policies', () => {
  const noRestarts: ReportView = { restartCount: () => 0 };
  const ctx = (o: Partial<PlanContext> = {}): PlanContext => ({ node: NODE, now: T0, images: new Set(['localhost/app:1']), restartBackoff: () => 0, ...o });
  const needsCm = mkPod([{ name: 'c', env: [{ name: 'G', valueFrom: { configMapKeyRef: { name: 'app', key: 'greeting' } } }] }]);

  it('a missing ConfigMap blocks the container: CreateContainerConfigError naming it, once as an event', async () => {
    const run = ctxWith(config({}));
    const r = plan([], [needsCm], ctx({ run }));
    assert.deepEqual(r.steps, []);
    assert.deepEqual(r.invalid.map((i) => [i.reason, i.message]), [['CreateContainerConfigError', 'configmap "app" not found']]);
    const [report] = podReports(r, noRestarts, T0);
    assert.equal(report!.phase, 'Pending');
    assert.deepEqual([report!.containers[0]!.state, report!.containers[0]!.reason, report!.containers[0]!.message], ['waiting', 'CreateContainerConfigError', 'configmap "app" not found']);
    const events: AgentEvent[] = [];
    const restarts = new RestartTracker({ clock: () => T0 });
    const deps = { runtime: undefined as never, logger: silentLogger, emit: (e: AgentEvent) => events.push(e), restarts };
    await applyPlan(r, deps);
    await applyPlan(plan([], [needsCm], ctx({ run })), deps);
    assert.deepEqual(events.map((e) => `${e.type}/${e.reason}: ${e.message}`), ['Warning/Failed: Error: container c: configmap "app" not found']);

    const ok = plan([], [needsCm], ctx({ run: ctxWith(config({ app: { greeting: 'hi' } })) }));
    assert.equal(ok.steps[0]!.action === 'run' && ok.steps[0]!.spec.env.G, 'hi');
  });

  it('a running container is left alone when its ConfigMap changes or goes away', () => {
    const spec = toRunSpec(needsCm, 'c', NODE, ctxWith(config({ app: { greeting: 'old' } })));
    const running: RuntimeContainer = { id: 'id1', name: spec.name, image: spec.image, labels: spec.labels, state: 'running', startedAt: new Date(T0).toISOString() };
    assert.deepEqual(plan([running], [needsCm], ctx({ run: ctxWith(config({ app: { greeting: 'new' } })) })).steps, []);
    const gone = plan([running], [needsCm], ctx({ run: ctxWith(config({})) }));
    assert.deepEqual([gone.steps, gone.invalid], [[], []]);
    const [report] = podReports(gone, noRestarts, T0);
    assert.deepEqual([report!.phase, report!.containers[0]!.state, report!.containers[0]!.ready], ['Running', 'running', true]);
  });

  it('imagePullPolicy Never: no pull, ErrImageNeverPull; IfNotPresent (default) runs a present image', () => {
    const never = mkPod([{ name: 'c', image: 'localhost/absent:1', imagePullPolicy: 'Never' }]);
    const r = plan([], [never], ctx());
    assert.deepEqual(r.steps, []);
    assert.deepEqual(r.invalid.map((i) => [i.reason, i.message]), [['ErrImageNeverPull', 'Container image "localhost/absent:1" is not present with pull policy of Never']]);
    const [report] = podReports(r, noRestarts, T0);
    assert.equal(report!.containers[0]!.reason, 'ErrImageNeverPull');
    const present = mkPod([{ name: 'c', imagePullPolicy: 'Never' }]);
    assert.deepEqual(plan([], [present], ctx()).steps.map((s) => s.action), ['run']);
    assert.deepEqual(plan([], [mkPod([{ name: 'c', image: 'localhost/absent:1' }])], ctx()).steps.map((s) => s.action), ['pull']);
  });

  it('imagePullPolicy Always pulls before creating a container, even when the image is present', () => {
    const always = mkPod([{ name: 'c', imagePullPolicy: 'Always' }]);
    assert.deepEqual(plan([], [always], ctx()).steps.map((s) => s.action), ['pull']);
    const tracker = new RestartTracker({ clock: () => T0 });
    tracker.pullSucceeded('localhost/app:1');
    assert.deepEqual(plan([], [always], tracker.planContext(NODE, new Set(['localhost/app:1']))).steps.map((s) => s.action), ['run']);
    const later = new RestartTracker({ clock: () => T0 + 120_000 });
    assert.deepEqual(plan([], [always], later.planContext(NODE, new Set(['localhost/app:1']))).steps.map((s) => s.action), ['pull']);
  });

  it('readiness comes from the probes; a container killed by its liveness probe restarts even under OnFailure with exit 0', () => {
    const pod = mkPod([{ name: 'c' }], { restartPolicy: 'OnFailure' });
    const spec = toRunSpec(pod, 'c', NODE);
    const running: RuntimeContainer = { id: 'id1', name: spec.name, image: spec.image, labels: spec.labels, state: 'running', startedAt: new Date(T0).toISOString() };
    const ready = (v: boolean | undefined) => podReports(plan([running], [pod], ctx()), noRestarts, T0, () => v)[0]!.containers[0]!.ready;
    assert.deepEqual([ready(false), ready(true), ready(undefined)], [false, true, true]);

    const exited0 = { ...running, state: 'exited' as const, exitCode: 0, finishedAt: new Date(T0).toISOString() };
    const tracker = new RestartTracker({ clock: () => T0 + 60_000 });
    assert.deepEqual(plan([exited0], [pod], tracker.planContext(NODE, new Set(['localhost/app:1']))).steps, []);
    tracker.killedForProbe('uid-web-0000-1111/c', 'id1');
    assert.deepEqual(plan([exited0], [pod], tracker.planContext(NODE, new Set(['localhost/app:1']))).steps.map((s) => s.action), ['restart']);
    assert.equal(podReports(plan([exited0], [pod], tracker.planContext(NODE, new Set(['localhost/app:1']))), tracker, T0)[0]!.containers[0]!.reason, 'CrashLoopBackOff');
  });
});

describe('node devices', () => {
  it('lists serial ports, GPIO chips, video, I2C and SPI devices, not virtual consoles', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-dev-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    for (const n of ['tty', 'tty0', 'tty12', 'ttyS0', 'ttyUSB10', 'ttyUSB2', 'ttyACM0', 'ttyAMA0', 'gpiochip0', 'video0', 'i2c-1', 'spidev0.1', 'null', 'sda', 'ptmx']) await writeFile(join(dir, n), '');
    assert.deepEqual(await listDevices(dir), ['gpiochip0', 'i2c-1', 'spidev0.1', 'ttyACM0', 'ttyAMA0', 'ttyS0', 'ttyUSB2', 'ttyUSB10', 'video0'].map((n) => `${dir}/${n}`));
    assert.deepEqual(await listDevices(join(dir, 'absent')), []);
  });
});
