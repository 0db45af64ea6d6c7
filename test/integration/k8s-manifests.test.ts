/**
 * Real Kubernetes manifests (test/fixtures/k8s: examples from the kubernetes.io documentation,
 * block and flow/KYAML style) applied with the real `drover` binary to a real server. Every
 * object must be created, and nothing may be dropped silently: each field of each manifest is
 * either stored as written or named in a `Warning:` line of the apply.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { normalizeSecret, type Secret } from '../../src/api/config.js';
import { KINDS, objectPath } from '../../src/api/kinds.js';
import { parseManifests } from '../../src/api/manifest.js';
import { objectName } from '../../src/cli/output.js';
import { drover, ok, ROOT, type Run } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const FIXTURES = join(ROOT, 'test/fixtures/k8s');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

interface Doc {
  file: string;
  manifest: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<string, Json>;
  /** `deployment.apps/web`, as apply names it. */
  display: string;
  path: string;
}

function docsOf(file: string): Doc[] {
  return (parseManifests(readFileSync(file, 'utf8'), file) as Doc['manifest'][]).map((manifest) => {
    const kind = KINDS.find((k) => k.kind === manifest.kind);
    assert.ok(kind, `${file}: kind ${manifest.kind} is not served`);
    const ns = kind.namespaced ? manifest.metadata.namespace ?? 'default' : undefined;
    return { file, manifest, display: objectName(kind, manifest.metadata.name), path: objectPath(kind, ns, manifest.metadata.name) };
  });
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(dir, e.name))
    .sort();
}

type Segment = string | number;

/** kubectl-style path: `spec.template.spec.containers[0].image`. */
function pathText(segs: Segment[]): string {
  return segs.reduce<string>((acc, s) => (typeof s === 'number' ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s), '');
}

/** Leaves of a manifest with their paths (segments, since keys such as `game.properties` hold dots). */
function leaves(v: Json, segs: Segment[] = []): Array<{ segs: Segment[]; value: Json }> {
  const isObj = v !== null && typeof v === 'object';
  if (!isObj || (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0)) return [{ segs, value: v }];
  if (Array.isArray(v)) return v.flatMap((x, i) => leaves(x, [...segs, i]));
  return Object.entries(v).flatMap(([k, x]) => leaves(x, [...segs, k]));
}

function at(obj: unknown, segs: Segment[]): unknown {
  let cur: unknown = obj;
  for (const seg of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

/** Fields the system owns: a manifest may carry them, the stored object has its own. */
const SYSTEM_OWNED = [/^status(\.|\[|$)/, /^metadata\.(creationTimestamp|resourceVersion|uid|generation)$/];

/** `Warning: deployment.apps/web: spec.x: not supported by drover, ignored` → display → paths. */
function warnedPaths(stderr: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of stderr.split('\n')) {
    const m = /^Warning: (\S+): ([^:]+): /.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

/** Every manifest field that is neither stored as written nor named (itself or a parent) in a warning. */
async function silentlyDropped(t: TestServer, docs: Doc[], warned: Map<string, string[]>): Promise<string[]> {
  const problems: string[] = [];
  for (const d of docs) {
    const res = await t.api('GET', d.path);
    if (res.status !== 200) {
      problems.push(`${d.file}: ${d.display}: not stored (GET ${d.path} → ${res.status})`);
      continue;
    }
    // A Secret's stringData is stored merged into data, base64-encoded, as in Kubernetes.
    const manifest = d.manifest.kind === 'Secret' ? (normalizeSecret(d.manifest as unknown as Secret) as unknown as Json) : (d.manifest as unknown as Json);
    const warnings = warned.get(d.display) ?? [];
    for (const { segs, value } of leaves(manifest)) {
      const path = pathText(segs);
      if (SYSTEM_OWNED.some((re) => re.test(path))) continue;
      if (warnings.some((w) => path === w || path.startsWith(`${w}.`) || path.startsWith(`${w}[`))) continue;
      const stored = at(res.body, segs);
      const same =
        value !== null && typeof value === 'object'
          ? // An empty object or list: the stored one may have been filled with defaults.
            stored !== null && typeof stored === 'object' && Array.isArray(stored) === Array.isArray(value)
          : stored === value;
      if (!same) problems.push(`${d.file}: ${d.display}: ${path}: manifest has ${JSON.stringify(value)}, stored ${JSON.stringify(stored)}, and no warning names it`);
    }
  }
  return problems;
}

describe('real Kubernetes manifests (kubernetes.io examples)', () => {
  let t: TestServer;
  let env: Record<string, string>;
  const files = yamlFiles(FIXTURES);
  const docs = files.flatMap(docsOf);
  let applied: Run;

  before(async () => {
    t = await startTestServer();
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
  });
  after(async () => {
    await t?.stop();
  });

  it('the fixtures cover the kinds they are meant to', () => {
    const kinds = new Set(docs.map((d) => d.manifest.kind));
    for (const k of ['Namespace', 'Deployment', 'DaemonSet', 'Job', 'ConfigMap', 'Secret', 'Pod']) assert.ok(kinds.has(k), k);
    assert.ok(files.some((f) => /^\s*\{/m.test(readFileSync(f, 'utf8'))), 'a flow-style (KYAML) manifest');
  });

  it('apply -f DIR creates every object (exit 0)', async () => {
    applied = ok(await drover(env, ['apply', '-f', `${FIXTURES}/`]));
    assert.deepEqual(applied.stdout.trimEnd().split('\n'), docs.map((d) => `${d.display} created`));
    for (const line of applied.stderr.split('\n').filter(Boolean)) assert.match(line, /^Warning: /);
  });

  it('unsupported fields are named in warnings', () => {
    const warned = warnedPaths(applied.stderr);
    assert.deepEqual(warned.get('deployment.apps/kyaml-demo'), ['spec.template.spec.containers[0].securityContext']);
    assert.deepEqual(warned.get('pod/security-context-demo'), ['spec.securityContext', 'spec.containers[0].securityContext']);
    for (const line of applied.stderr.split('\n').filter(Boolean)) assert.match(line, /^Warning: \S+: \S+: not supported by drover, ignored$/);
  });

  it('nothing is silently dropped: every field is stored as written or warned about', async () => {
    const problems = await silentlyDropped(t, docs, warnedPaths(applied.stderr));
    assert.deepEqual(problems, []);
  });

  it('applying again changes nothing', async () => {
    const again = ok(await drover(env, ['apply', '-f', FIXTURES]));
    assert.deepEqual(again.stdout.trimEnd().split('\n'), docs.map((d) => `${d.display} unchanged`));
  });
});
