/**
 * Deployment figures on real podman, beside raw podman doing the same work in the same run and Docker
 * Swarm quoted from ../shared/design/ANCHORS.md (same machine kind, Docker 20.10):
 *   (a) POST a Deployment of 10 replicas → 10 pods Running and Ready (API watch);
 *   (b) scale 10 → 50 → 50 Running and Ready;
 *   (c) rolling update of the 50 (a new env value in the template), maxSurge 0 / maxUnavailable 2,
 *       minReadySeconds 0 (Swarm: --update-parallelism 2, stop-first, delay 0) → 50 new pods Running
 *       and Ready, no old pod left;
 *   (d) DELETE the Deployment (cascading) → 0 containers in podman (`podman events` remove events
 *       for all 50, then a `podman ps` to confirm).
 * Raw podman: the same containers with `podman run -d` / `podman rm -f -t 10` from shell scripts
 * (xargs), both 4 at a time (the agent's bound on runtime calls) and all at once; the rolling update
 * by two workers, each removing one old container then running its replacement (Swarm's stop-first,
 * parallelism 2). The agent runs as its own process (`drover agent`), as on a device.
 * The containers trap TERM and exit at once (`sleep & wait`, not a foreground sleep the trap would wait
 * for): what is measured is the orchestration, not a graceful stop.
 * The server and the local agent run as in bench/deploy-latency.ts (TLS, joined with the token).
 *
 * Run (root, podman installed): node --import tsx bench/deployment.ts [--rounds N] [--out NAME] [--skip-raw]
 *   → bench/results/NAME.json and NAME.md (default deployment)
 */
import { execa } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/util/logger.js';
import { median, numArg, parseArgs, round, writeResult } from './lib/common.js';
import { startLocalCluster, type LocalCluster } from './lib/local-cluster.js';

const args = parseArgs(process.argv.slice(2));
const ROUNDS = numArg(args, 'rounds', 1);
const OUT = args.get('out') ?? 'deployment';
/** Drover only (a quicker look while changing it); the result then has no raw column. */
const SKIP_RAW = args.has('skip-raw');
const NODE = 'bench-node';
const DEPLOYMENT = 'bench-dep';
const SMALL = 10;
const LARGE = 50;
/** Raw podman's parallelism: the agent's runtime-call bound (agent/reconciler.ts RUNTIME_SLOTS). */
const RAW_SLOTS = 4;
/** Swarm's --update-parallelism and our maxUnavailable. */
const ROLL_PARALLEL = 2;
const GRACE_SECONDS = 10;
/** Exits at once on TERM: `wait` returns when the trapped signal arrives (a foreground sleep would not). */
const CMD = ['sh', '-c', "trap 'exit 0' TERM; sleep 3600 & wait"];

/** ANCHORS.md, "Measured on this machine kind": Docker 20.10 Swarm, seconds. */
const SWARM = { create10: 1.56, scale10to50: 5.96, rolling50: 53.2, remove50: 4.8 };
/** The issue's goals as a fraction of Swarm's time. */
const GOAL = { create10: 0.8, scale10to50: 0.8, rolling50: 0.25, remove50: 0.8 };

const loadBefore = loadavg();

type Row = 'create10' | 'scale10to50' | 'rolling50' | 'remove50';

function deploymentManifest(image: string, replicas: number, rev: string) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: DEPLOYMENT },
    spec: {
      replicas,
      minReadySeconds: 0,
      selector: { matchLabels: { app: DEPLOYMENT } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: ROLL_PARALLEL } },
      template: {
        metadata: { labels: { app: DEPLOYMENT } },
        spec: { terminationGracePeriodSeconds: GRACE_SECONDS, containers: [{ name: 'main', image, command: CMD, env: [{ name: 'REV', value: rev }] }] },
      },
    },
  };
}

const ready = (p: any) => p?.status?.phase === 'Running' && p.status.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') && !p.metadata.deletionTimestamp;
const rev = (p: any) => p?.spec?.containers?.[0]?.env?.find((e: any) => e.name === 'REV')?.value;

/** Resolves (performance.now()) when every container in `ids` has had a podman remove event. */
async function watchRemoves(c: LocalCluster, ids: Set<string>): Promise<{ done: Promise<number>; stop(): void }> {
  const proc = execa('podman', ['--root', c.sb.root, '--runroot', c.sb.runroot, 'events', '--filter', 'type=container', '--filter', 'event=remove', '--format', '{{.ID}}'], { env: c.sb.env, stdin: 'ignore', buffer: false, reject: false });
  const left = new Set(ids);
  let rest = '';
  const done = new Promise<number>((resolve) => {
    proc.stdout!.on('data', (d: Buffer) => {
      rest += d.toString();
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        const id = l.trim();
        for (const full of left) if (full.startsWith(id) || id.startsWith(full)) left.delete(full);
      }
      if (left.size === 0) resolve(performance.now());
    });
  });
  // `podman events` prints nothing until it has started reading: give it that moment.
  await new Promise((r) => setTimeout(r, 500));
  return { done, stop: () => void proc.kill() };
}

interface RawFigures {
  runSmall: Record<string, number>;
  runMore: Record<string, number>;
  rolling: number;
  remove: Record<string, number>;
}

/**
 * Raw podman doing each row's work, from shell scripts (xargs -P N): a podman call forked by this
 * process (which holds the server and the watches) would be charged the fork of a big process.
 * Leaves no container behind.
 */
async function rawRound(c: LocalCluster, round: number): Promise<RawFigures> {
  const { image } = c;
  const dir = await mkdtemp(join(tmpdir(), 'drover-bench-raw-'));
  try {
    const P = `podman --root ${c.sb.root} --runroot ${c.sb.runroot}`;
    const cmd = CMD.slice(0, 2).join(' ') + ` "${CMD[2]}"`;
    // run.sh NAME REV; rm.sh ID...; roll.sh ID NAME (stop-first: remove the old one, run its replacement).
    await writeFile(join(dir, 'run.sh'), `exec ${P} run -d --name "$1" --label bench=raw --env REV="$2" ${image} ${cmd} >/dev/null\n`);
    await writeFile(join(dir, 'rm.sh'), `exec ${P} rm -f -t ${GRACE_SECONDS} "$@" >/dev/null\n`);
    await writeFile(join(dir, 'roll.sh'), `${P} rm -f -t ${GRACE_SECONDS} "$1" >/dev/null && exec sh ${dir}/run.sh "$2" 2\n`);
    const sh = async (script: string) => {
      const t0 = performance.now();
      await execa('sh', ['-c', script], { env: c.sb.env, stdin: 'ignore' });
      return (performance.now() - t0) / 1000;
    };
    const ids = async (prefix: string) => (await c.podman(['ps', '-aq', '--no-trunc', '--filter', `name=^${prefix}`])).stdout.split('\n').filter(Boolean);
    const names = (prefix: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`).join(' ');
    const out: RawFigures = { runSmall: {}, runMore: {}, rolling: 0, remove: {} };
    for (const [label, parallel] of [[`${RAW_SLOTS} at a time`, RAW_SLOTS], ['all at once', LARGE]] as const) {
      const p = `raw${round}-${parallel}-`;
      out.runSmall[label] = await sh(`printf '%s 1\\n' ${names(p, 0, SMALL)} | xargs -P ${parallel} -n 2 sh ${dir}/run.sh`);
      out.runMore[label] = await sh(`printf '%s 1\\n' ${names(p, SMALL, LARGE)} | xargs -P ${parallel} -n 2 sh ${dir}/run.sh`);
      let prefix = p;
      if (parallel === RAW_SLOTS) {
        const old = await ids(p);
        out.rolling = await sh(`printf '%s\\n' ${old.map((id, i) => `${id} ${p}v2-${i}`).join(' ')} | xargs -P ${ROLL_PARALLEL} -n 2 sh ${dir}/roll.sh`);
        prefix = `${p}v2-`;
      }
      const left = await ids(prefix);
      out.remove[label] = await sh(`printf '%s\\n' ${left.join(' ')} | xargs -P ${parallel} -n 1 sh ${dir}/rm.sh`);
    }
    // One `podman rm` of all 50 (podman removes them side by side itself).
    const p = `raw${round}-one-`;
    await sh(`printf '%s 1\\n' ${names(p, 0, LARGE)} | xargs -P ${RAW_SLOTS} -n 2 sh ${dir}/run.sh`);
    out.remove['one call'] = await sh(`sh ${dir}/rm.sh ${(await ids(p)).join(' ')}`);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface DroverFigures {
  create10: number;
  scale10to50: number;
  rolling50: number;
  remove50: number;
  /** Milestones (s after the request): all pods created in the API, all bound, all Running and Ready. */
  milestones: Record<string, Record<string, number>>;
}

async function droverRound(c: LocalCluster, round: number): Promise<DroverFigures> {
  const { api, image } = c;
  const base = `/apis/apps/v1/namespaces/default/deployments`;
  const log: Array<{ t: number; type: string; name: string; rev: string | undefined; bound: boolean; ready: boolean }> = [];
  const watch = await c.watchPods(`app=${DEPLOYMENT}`, (type, p, t) => log.push({ t, type, name: p.metadata.name, rev: rev(p), bound: !!p.spec?.nodeName, ready: !!ready(p) }));
  const milestones: DroverFigures['milestones'] = {};
  // The API answers a merge patch that raced a status write with 409 (Kubernetes' API server retries
  // it itself): as kubectl would have to, try again.
  const patch = async (body: unknown) => {
    for (let i = 0; ; i++) {
      const r = await api('PATCH', `${base}/${DEPLOYMENT}`, body, 'application/merge-patch+json');
      if (r.status !== 409 || i >= 10) return r;
      conflicts++;
    }
  };
  const track = (row: string, t0: number, n: number, isNew: (p: any) => boolean) => {
    const m: Record<string, number> = {};
    milestones[row] = m;
    const at = (key: string, pred: (pods: any[]) => boolean) => void watch.when(pred).then((t) => (m[key] = round3((t - t0) / 1000)), () => undefined);
    at('all pods created', (ps) => ps.filter(isNew).length >= n);
    at('all pods bound', (ps) => ps.filter((p) => isNew(p) && p.spec?.nodeName).length >= n);
  };
  try {
    // (a) 10 replicas
    let t0 = performance.now();
    const r = await api('POST', base, deploymentManifest(image, SMALL, '1'));
    if (r.status !== 201) throw new Error(`create deployment: ${r.status} ${JSON.stringify(r.body)}`);
    track('create10', t0, SMALL, () => true);
    let t = await watch.when((ps) => ps.filter(ready).length === SMALL);
    const create10 = (t - t0) / 1000;

    // (b) 10 → 50
    t0 = performance.now();
    const s = await patch({ spec: { replicas: LARGE } });
    if (s.status !== 200) throw new Error(`scale: ${s.status} ${JSON.stringify(s.body)}`);
    track('scale10to50', t0, LARGE, () => true);
    t = await watch.when((ps) => ps.filter(ready).length === LARGE);
    const scale10to50 = (t - t0) / 1000;

    // (c) rolling update of the 50, 2 at a time
    t0 = performance.now();
    const u = await patch({ spec: { template: { spec: { containers: [{ name: 'main', image, command: CMD, env: [{ name: 'REV', value: '2' }] }] } } } });
    if (u.status !== 200) throw new Error(`update: ${u.status} ${JSON.stringify(u.body)}`);
    track('rolling50', t0, LARGE, (p) => rev(p) === '2');
    t = await watch.when((ps) => ps.length === LARGE && ps.every((p) => rev(p) === '2' && ready(p)), 1_800_000);
    const rolling50 = (t - t0) / 1000;
    milestones.rollingSteps = rollingSteps(log.filter((e) => e.t >= t0 && e.t <= t));

    // (d) delete the Deployment → 0 containers
    const listed = await c.sb.runtime.list({ 'drover.io/managed': '' });
    const removes = await watchRemoves(c, new Set(listed.map((x) => x.id)));
    t0 = performance.now();
    const d = await api('DELETE', `${base}/${DEPLOYMENT}`);
    if (d.status !== 200 && d.status !== 202) throw new Error(`delete: ${d.status} ${JSON.stringify(d.body)}`);
    const m: Record<string, number> = {};
    milestones.remove50 = m;
    void watch.when((ps) => ps.length === 0).then((x) => (m['0 pods in the API'] = round3((x - t0) / 1000)));
    t = await Promise.race([removes.done, new Promise<number>((_, rej) => setTimeout(() => rej(new Error('containers not removed within 180 s')), 180_000))]);
    removes.stop();
    const remove50 = (t - t0) / 1000;
    const left = await c.sb.runtime.list({ 'drover.io/managed': '' });
    if (left.length) throw new Error(`${left.length} containers left after the delete`);
    m['0 containers'] = round3(remove50);
    await c.until('no pods left', async () => watch.pods.size === 0, 60_000);
    void round;
    return { create10, scale10to50, rolling50, remove50, milestones };
  } finally {
    watch.close();
  }
}

const round3 = (n: number) => round(n, 3);
/** PATCHes answered 409 and tried again (see droverRound). */
let conflicts = 0;

/**
 * Where a rolling update's time goes, from the pod watch (median ms over the new pods): created → bound
 * (scheduler), bound → Running and Ready (publish, agent, podman, report), and the controllers' turn:
 * from a new pod Ready to the next new pod created.
 */
function rollingSteps(log: Array<{ t: number; type: string; name: string; rev: string | undefined; bound: boolean; ready: boolean }>): Record<string, number> {
  const first = (name: string, pred: (e: (typeof log)[number]) => boolean) => log.find((e) => e.name === name && pred(e))?.t;
  const newPods = [...new Set(log.filter((e) => e.rev === '2').map((e) => e.name))];
  const created = newPods.map((n) => first(n, (e) => e.type === 'ADDED')).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const readyAt = newPods.map((n) => first(n, (e) => e.ready)).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const oldDeleted = log.filter((e) => e.type === 'DELETED' && e.rev !== '2').map((e) => e.t);
  const toBound = newPods.map((n) => (first(n, (e) => e.bound) ?? NaN) - (first(n, (e) => e.type === 'ADDED') ?? NaN)).filter(Number.isFinite);
  const toReady = newPods.map((n) => (first(n, (e) => e.ready) ?? NaN) - (first(n, (e) => e.bound) ?? NaN)).filter(Number.isFinite);
  const turn = created.slice(2).map((c) => c - Math.max(...readyAt.filter((r) => r <= c), -Infinity)).filter(Number.isFinite);
  const deleteTurn = oldDeleted.slice(2).map((d) => d - Math.max(...readyAt.filter((r) => r <= d), -Infinity)).filter(Number.isFinite);
  return {
    'new pods seen': newPods.length,
    'created → bound, median ms': round(median(toBound)),
    'bound → Running and Ready, median ms': round(median(toReady)),
    'a new pod Ready → next new pod created, median ms': round(median(turn)),
    'a new pod Ready → next old pod deleted, median ms': round(median(deleteTurn)),
  };
}

function markdown(r: any): string {
  const lines = [
    `# Deployment figures on real podman (${r.rounds} round${r.rounds > 1 ? 's' : ''}), ${r.date}`,
    '',
    `Load average (1/5/15 min) start → end: ${r.loadAverage.join(' / ')}; ${r.podmanVersion}; drover at ${r.commit}.`,
    `Re-run: \`${r.command}\``,
    `Setup: ${r.mode}.`,
    '',
    'Raw podman does the same containers in the same run (median of the rounds); Swarm is quoted from ANCHORS.md',
    '(Docker 20.10 Swarm, same machine kind, not re-measured here). Seconds.',
    '',
    '| what | raw podman, 4 at a time | raw podman, all at once / one call | drover | drover ÷ raw (4) | Swarm | drover ÷ Swarm | goal |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const rows: Array<[Row, string, string, string]> = [
    ['create10', 'Deployment 10 replicas → 10 Running and Ready', 'runSmall', 'all at once'],
    ['scale10to50', 'scale 10 → 50 → 50 Running and Ready', 'runMore', 'all at once'],
    ['rolling50', 'rolling update of 50, 2 at a time (maxSurge 0, maxUnavailable 2, minReadySeconds 0)', 'rolling', ''],
    ['remove50', 'delete the 50-pod Deployment → 0 containers', 'remove', 'one call'],
  ];
  for (const [row, what, rawKey, alt] of rows) {
    const raw = r.raw?.[rawKey] ?? { [`${RAW_SLOTS} at a time`]: NaN, 'all at once': '—', 'one call': '—' };
    const raw4 = typeof raw === 'number' ? raw : raw[`${RAW_SLOTS} at a time`];
    const rawAlt = typeof raw === 'number' ? '—' : `${raw['all at once']}${row === 'remove50' ? ` / ${raw['one call']}` : ''}`;
    void alt;
    const ours = r.drover[row];
    const goal = `≤ ${GOAL[row]}× Swarm (${round(GOAL[row] * SWARM[row], 2)} s)`;
    lines.push(`| ${what} | ${row === 'rolling50' ? `${raw4} (2 workers: rm -f, run -d)` : raw4} | ${rawAlt} | **${ours}** | ${round(ours / raw4, 2)}× | ${SWARM[row]} | ${round(ours / SWARM[row], 2)}× | ${goal} ${ours <= GOAL[row] * SWARM[row] ? '✓' : '✗'} |`);
  }
  lines.push(
    '',
    '## Milestones (s after the request, last round)',
    '',
    '| row | milestone | s |',
    '|---|---|---|',
    ...Object.entries(r.milestones as Record<string, Record<string, number>>).flatMap(([row, m]) => Object.entries(m).map(([k, v]) => `| ${row} | ${k} | ${v} |`)),
    '',
    '## How the rolling update compares with Swarm\'s',
    '',
    'Swarm\'s `--update-parallelism 2 --update-order stop-first` keeps two workers busy: each stops one old task, starts its',
    'replacement and takes the next slot once the new task runs (`--update-delay`, 0 by default, would pause between tasks).',
    '`--update-monitor 5s` is a failure watch, not a wait between batches: a task failing within 5 s of its update counts',
    'towards `--update-max-failure-ratio`; after the last slot the updater keeps watching for one more monitor period before',
    'it marks the update completed, and `docker service update` (without `--detach`) waits for that \"verify\" period after',
    'convergence before it returns. So Swarm\'s 53.2 s holds one final ~5 s verification (≈ 48 s of updating).',
    'drover\'s maxSurge 0 / maxUnavailable 2 is the same shape: two pods down at a time, the next deleted as soon as a new one is',
    'available; minReadySeconds 0 (a pod counts as available as soon as it is Ready, no readiness probe here). drover has no',
    'separate monitor period: progressDeadlineSeconds watches the whole rollout. The raw podman column does Swarm\'s shape by hand.',
    '',
  );
  return lines.join('\n');
}

const cluster = await startLocalCluster({ node: NODE, logger: silentLogger, agentProcess: true });
try {
  const raws: RawFigures[] = [];
  const drovers: DroverFigures[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    if (!SKIP_RAW) raws.push(await rawRound(cluster, i));
    drovers.push(await droverRound(cluster, i));
    console.error(`round ${i + 1}: raw ${JSON.stringify(raws.at(-1))} drover ${JSON.stringify(drovers.at(-1))}`);
  }
  const med = (xs: number[]) => round(median(xs), 2);
  const medRec = (recs: Array<Record<string, number>>) => Object.fromEntries(Object.keys(recs[0]!).map((k) => [k, med(recs.map((x) => x[k]!))]));
  const commit = (await execa('git', ['rev-parse', '--short', 'HEAD'], { reject: false })).stdout.trim() || 'unknown';
  const result = {
    rounds: ROUNDS,
    commit,
    command: `node --import tsx bench/deployment.ts --rounds ${ROUNDS}${OUT !== 'deployment' ? ` --out ${OUT}` : ''}${SKIP_RAW ? ' --skip-raw' : ''}`,
    podmanVersion: (await cluster.podman(['--version'])).stdout.trim(),
    mode: 'TLS (HTTPS API, MQTT over TLS, node client certificate); one local agent as its own process (drover agent from source, V8 default flags); raw podman from sh/xargs; containers exit at once on TERM',
    settings: { rawParallel: RAW_SLOTS, rollingParallel: ROLL_PARALLEL, maxSurge: 0, maxUnavailable: ROLL_PARALLEL, minReadySeconds: 0, terminationGracePeriodSeconds: GRACE_SECONDS },
    raw: SKIP_RAW ? undefined : {
      runSmall: medRec(raws.map((x) => x.runSmall)),
      runMore: medRec(raws.map((x) => x.runMore)),
      rolling: med(raws.map((x) => x.rolling)),
      remove: medRec(raws.map((x) => x.remove)),
    },
    drover: {
      create10: med(drovers.map((x) => x.create10)),
      scale10to50: med(drovers.map((x) => x.scale10to50)),
      rolling50: med(drovers.map((x) => x.rolling50)),
      remove50: med(drovers.map((x) => x.remove50)),
    },
    perRound: { raw: SKIP_RAW ? undefined : raws, drover: drovers.map(({ milestones: _, ...x }) => x) },
    milestones: drovers.at(-1)!.milestones,
    patchConflictsRetried: conflicts,
    swarm: SWARM,
    goalTimesSwarm: GOAL,
    loadAverage: loadBefore.map((l, i) => `${round(l, 2)} → ${round(loadavg()[i]!, 2)}`),
  };
  await cluster.close();
  console.log(JSON.stringify(result, null, 2));
  const file = writeResult(OUT, result);
  await writeFile(file.replace(/\.json$/, '.md'), markdown({ ...result, date: new Date().toISOString() }));
  console.log(`wrote ${file}`);
} catch (err) {
  await cluster.close().catch(() => undefined);
  throw err;
}
