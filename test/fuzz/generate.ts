/**
 * Generators of hostile input for the fuzz test: HTTP requests (paths, methods, headers, bodies) and MQTT
 * payloads, from a seeded PRNG so a failing input is reproduced by its seed and index.
 */

/** mulberry32: small, fast, good enough to spread test inputs; deterministic for a seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Gen {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  ascii(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x21 + this.int(0x5e));
    return s;
  }
}

export interface HttpInput {
  method: string;
  /** Sent as is: only printable ASCII (what an HTTP parser lets through to the server's code). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** A well-formed create that must succeed (201): the only writes the store may show afterwards. */
  valid?: { kind: string; namespace: string; name: string };
}

/** Names no stored object has: a request that acts on one of them must not touch anything that exists. */
const NAMES = ['zz-fuzz', 'no-such', 'a', 'x'.repeat(254), 'UPPER', 'under_score', '-lead', 'trail-', 'dots.in.name', 'ünï', 'sp ace', '%2e%2e', '%2E%2e', '..', '.', '%ZZ', '%', '%0', '%00', '%2F', '%2f..%2f', '%252e%252e', '%c0%ae%c0%ae', '%u002e', '*', '+', '#', '~', "'", '"', '<script>', '${x}', '\\', 'con', 'null', 'undefined', '__proto__', 'constructor', 'prototype', '0', '-1', '1e9', 'NaN'];
const SEGMENTS = ['api', 'apis', 'v1', 'v2', 'v1beta1', 'apps', 'batch', 'namespaces', 'nodes', 'pods', 'configmaps', 'secrets', 'deployments', 'replicasets', 'daemonsets', 'jobs', 'events', 'resourcequotas', 'log', 'exec', 'status', 'scale', 'metrics.k8s.io', 'drover', 'tokens', 'join', 'renew', 'cacerts', 'approve', 'revoke', 'watch', 'healthz', 'readyz', 'version', 'openapi', 'nosuchns'];
const PREFIXES = [
  '/api/v1/namespaces/fuzzns/configmaps',
  '/api/v1/namespaces/fuzzns/secrets',
  '/api/v1/namespaces/fuzzns/pods',
  '/api/v1/namespaces/fuzzns/events',
  '/api/v1/namespaces/fuzzns/resourcequotas',
  '/apis/apps/v1/namespaces/fuzzns/deployments',
  '/apis/apps/v1/namespaces/fuzzns/daemonsets',
  '/apis/apps/v1/namespaces/fuzzns/replicasets',
  '/apis/batch/v1/namespaces/fuzzns/jobs',
  '/api/v1/namespaces',
  '/api/v1/nodes',
  '/api/v1/pods',
  '/apis/metrics.k8s.io/v1beta1/nodes',
  '/apis/metrics.k8s.io/v1beta1/namespaces/fuzzns/pods',
  '/drover/v1/tokens',
  '/drover/v1/nodes',
  '/v1/join',
  '/v1/renew',
];
const QUERIES = ['', '', '', '?watch=true&resourceVersion=abc', '?labelSelector=%ZZ', '?labelSelector=a%20in%20(', '?fieldSelector=spec.nodeName%3D', '?limit=-1', '?limit=1e999', '?resourceVersion=99999999999999999999', '?container=%00', '?tailLines=NaN', '?follow=maybe', '?dryRun=All', '?a=1&a=2&a=3', '?' + 'q'.repeat(2000), '#frag', '?%'];
const METHODS = ['GET', 'GET', 'POST', 'POST', 'POST', 'PUT', 'PUT', 'DELETE', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'CONNECTX'];
const CONTENT_TYPES = ['application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'application/merge-patch+json', 'text/plain', 'application/yaml', '', 'application/json; charset=utf-16', 'multipart/form-data; boundary=--x'];

/** Percent-encodes what an HTTP request line cannot carry raw (the attack forms above stay as written). */
function wire(seg: string): string {
  return [...seg].map((c) => (/^[\x21-\x7e]$/.test(c) ? c : encodeURIComponent(c))).join('');
}

function manifests(ns: string, name: string): Record<string, unknown>[] {
  const template = { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'busybox', resources: { requests: { cpu: '10m', memory: '8Mi' } } }] } };
  return [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, labels: { fuzz: 'yes' } }, data: { a: '1', b: 'two' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, type: 'Opaque', data: { k: 'dmFsdWU=' } },
    { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: template.spec },
    { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: ns }, spec: { replicas: 0, selector: { matchLabels: { app: name } }, template } },
    { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name, namespace: ns }, spec: { selector: { matchLabels: { app: name } }, template } },
    { apiVersion: 'batch/v1', kind: 'Job', metadata: { name, namespace: ns }, spec: { completions: 1, parallelism: 0, template: { ...template, spec: { ...template.spec, restartPolicy: 'Never' } } } },
    { apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name, namespace: ns }, spec: { hard: { pods: '10' } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
  ];
}

const WEIRD_VALUES: unknown[] = [null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 1, 1.5, 'x', '', 'x'.repeat(70_000), [], {}, [[[[]]]], { $ref: '#' }, '\u0000', '\ud800', '../../etc/passwd', '%2e%2e', 1e9, '1e9', '10000000000Gi', '-5m', 'NaN'];

/** Sets a random path inside `obj` to a weird value, or deletes it. */
function mutate(g: Gen, obj: Record<string, unknown>): void {
  let cur: Record<string, unknown> = obj;
  for (let depth = 0; depth < 6; depth++) {
    const keys = Object.keys(cur);
    if (keys.length === 0) break;
    const k = g.pick(keys);
    const v = cur[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && g.chance(0.6)) {
      cur = v as Record<string, unknown>;
      continue;
    }
    if (Array.isArray(v) && v.length && v[0] && typeof v[0] === 'object' && g.chance(0.6)) {
      cur = v[0] as Record<string, unknown>;
      continue;
    }
    if (g.chance(0.2)) delete cur[k];
    else cur[k] = structuredClone(g.pick(WEIRD_VALUES));
    return;
  }
  cur[g.pick(['unknownField', 'spec', 'status', 'kind', 'apiVersion', 'metadata', '__proto__'])] = structuredClone(g.pick(WEIRD_VALUES));
}

/** Text that is JSON-ish but wrong in one of the ways a parser must survive. */
function badJson(g: Gen, good: string): string {
  switch (g.int(10)) {
    case 0:
      return good.slice(0, g.int(good.length)); // truncated
    case 1: {
      const depth = 65 + g.int(3000);
      return '['.repeat(depth) + ']'.repeat(depth); // deep nesting
    }
    case 2: {
      const depth = 65 + g.int(3000);
      return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    }
    case 3:
      return good.replace('"', '"\\x').replace(/:/, ':\\u12'); // bad escapes
    case 4:
      return good.replace(/"kind":"[A-Za-z]+"/, `"kind":"${g.pick(['Widget', 'pod', 'Pod ', '', 'CustomResourceDefinition', 'Node', 'Event', 'Status', '__proto__'])}"`); // unknown kinds
    case 5:
      return good.replace(/\{/, '{"metadata":{"name":"dup-a"},'); // duplicate keys
    case 6:
      return good.replace(/(\d+)/, '1e99999').replace(/"replicas":0/, '"replicas":1e9'); // huge numbers
    case 7:
      return '\ufeff' + good + g.pick(['', ',', '}', ']', ' garbage', '\u0000']);
    case 8:
      return g.pick(['', 'null', 'true', '0', '"str"', '[]', '{}', 'NaN', 'undefined', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"x":1}}}']);
    default:
      return g.ascii(g.int(400));
  }
}

/**
 * One hostile HTTP request. About 1 in 60 is a valid ConfigMap create (name `fuzz-ok-N`), the writes the
 * store may show afterwards.
 */
export function httpInput(g: Gen, index: number, auth: string): HttpInput {
  const headers: Record<string, string> = {};
  // Most requests authenticated (so they reach parsing), some not, or with a token that is not one.
  const a = g.int(20);
  if (a < 17) headers.authorization = `Bearer ${auth}`;
  else if (a === 17) headers.authorization = `Bearer ${g.ascii(40)}`;
  else if (a === 18) headers.authorization = g.pick(['Basic YTpi', 'Bearer', 'Bearer  ', `bearer ${auth}x`, 'K10::..']);

  if (g.int(60) === 0) {
    const name = `fuzz-ok-${index}`;
    headers.authorization = `Bearer ${auth}`;
    headers['content-type'] = 'application/json';
    return {
      method: 'POST',
      path: '/api/v1/namespaces/fuzzns/configmaps',
      headers,
      body: Buffer.from(JSON.stringify(manifests('fuzzns', name)[0])),
      valid: { kind: 'ConfigMap', namespace: 'fuzzns', name },
    };
  }

  let path = g.pick(PREFIXES);
  const extra = g.int(4);
  for (let i = 0; i < extra; i++) path += '/' + wire(g.chance(0.5) ? g.pick(NAMES) : g.pick(SEGMENTS));
  if (g.chance(0.1)) path = path.replace(/\//g, () => (g.chance(0.2) ? '//' : '/'));
  if (g.chance(0.05)) path = g.pick(['', '*', 'api', '/..', '/%2e%2e/%2e%2e/etc/passwd', '/' + 'a/'.repeat(500)]) + path;
  path += g.pick(QUERIES);
  if (!path.startsWith('/') && path !== '*') path = '/' + path;

  const method = g.pick(METHODS);
  let body: Buffer | undefined;
  if (method !== 'GET' && method !== 'HEAD' && g.chance(0.9)) {
    const m = structuredClone(g.pick(manifests(g.pick(['fuzzns', 'default', 'other', '', '..']), g.pick(NAMES))));
    const r = g.int(10);
    let text: string;
    if (r < 4) {
      for (let i = 1 + g.int(3); i > 0; i--) mutate(g, m);
      text = JSON.stringify(m);
    } else if (r < 9) text = badJson(g, JSON.stringify(m));
    else text = JSON.stringify(m); // well-formed, to a (mostly) wrong path or name
    body = Buffer.from(text);
    const ct = g.pick(CONTENT_TYPES);
    if (ct) headers['content-type'] = ct;
  }
  if (g.chance(0.002)) {
    // Over the 3 MiB limit.
    body = Buffer.alloc(3 * 1024 * 1024 + 1 + g.int(1024 * 1024), 0x5b);
    headers['content-type'] = 'application/json';
  }
  return { method, path, headers, body };
}

/** A payload for an agent topic: wrong in shape, type, size or content. `valid` is a well-formed base. */
export function mqttPayload(g: Gen, valid: Record<string, unknown>): Buffer {
  const base = structuredClone(valid);
  const r = g.int(10);
  if (r < 4) {
    for (let i = 1 + g.int(3); i > 0; i--) mutate(g, base);
    return Buffer.from(JSON.stringify(base));
  }
  if (r < 8) return Buffer.from(badJson(g, JSON.stringify(base)));
  if (r === 8) return Buffer.from(Array.from({ length: g.int(2000) }, () => g.int(256)));
  return Buffer.alloc(0);
}
