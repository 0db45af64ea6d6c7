/**
 * The CLI's parsers and pure pieces: JSONPath templates, custom columns, --sort-by, -o, --dry-run,
 * --since, edit's buffer and merge, global flags, and server warnings as kubectl prints them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { ApiClient, dryRunSuffix, parseDryRun, parseWarningHeader } from '../../src/cli/client.js';
import { applyMergePatch, editBuffer, mergePatchBetween, readEdited } from '../../src/cli/edit.js';
import { parseGetOutput, renderGet } from '../../src/cli/get.js';
import { GLOBAL_OPTIONS, inheritGlobalOptions } from '../../src/cli/globals.js';
import { customColumnCell, JsonPath, parseCustomColumns, sortByPath, sortPath } from '../../src/cli/jsonpath.js';
import { logQuery, parseSince, prefixLines } from '../../src/cli/logs.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { CliError } from '../../src/cli/client.js';

const list = {
  kind: 'List',
  items: [
    { metadata: { name: 'b', labels: { app: 'x' } }, spec: { containers: [{ name: 'c1', image: 'i1' }, { name: 'c2', image: 'i2' }] }, status: { phase: 'Running', restarts: 10 } },
    { metadata: { name: 'a' }, spec: { containers: [{ name: 'c', image: 'i' }] }, status: { phase: 'Pending', restarts: 9 } },
  ],
};

describe('JSONPath templates (kubectl dialect)', () => {
  const run = (t: string, data: unknown = list) => new JsonPath(t).execute(data);
  it('paths, wildcards, indexes, slices, several results space-separated', () => {
    assert.equal(run('{.items[*].metadata.name}'), 'b a');
    assert.equal(run('{.items[0].spec.containers[*].image}'), 'i1 i2');
    assert.equal(run('{.items[-1:].metadata.name}'), 'a');
    assert.equal(run('{.items[0,1].status.phase}'), 'Running Pending');
    assert.equal(run("{.items[0].metadata['name']}"), 'b');
    assert.equal(run('{$.kind}'), 'List');
    assert.equal(run('{..image}'), 'i1 i2 i');
    assert.equal(run('names: {.items[*].metadata.name}.'), 'names: b a.');
  });
  it('range/end, string literals with escapes, filters', () => {
    assert.equal(run('{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}'), 'b\tRunning\na\tPending\n');
    assert.equal(run('{.items[?(@.status.phase=="Running")].metadata.name}'), 'b');
    assert.equal(run('{.items[?(@.status.restarts>9)].metadata.name}'), 'b');
    assert.equal(run('{.items[?(@.metadata.labels.app)].metadata.name}'), 'b');
  });
  it('maps and lists print as JSON, strings raw; a missing key prints nothing', () => {
    assert.equal(run('{.items[0].metadata.labels}'), '{"app":"x"}');
    assert.equal(run('{.items[*].nope}'), '');
  });
  it('malformed templates are errors naming the template', () => {
    assert.throws(() => new JsonPath('{.items['), /error parsing jsonpath \{\.items\[: unclosed/);
    assert.throws(() => new JsonPath('{range .items}'), /unclosed range/);
    assert.throws(() => new JsonPath('{.a}{end}'), /not in range/);
    assert.throws(() => new JsonPath('{.items[x]}'), /"x" is not an array index/);
  });
});

describe('custom columns, --sort-by, -o', () => {
  it('custom-columns: header:path, several results joined by commas, <none> when missing', () => {
    const cols = parseCustomColumns('NAME:.metadata.name,IMAGES:.spec.containers[*].image,APP:metadata.labels.app,FIRST:.spec.containers[0,1].name');
    assert.deepEqual(cols.map((c) => c.header), ['NAME', 'IMAGES', 'APP', 'FIRST']);
    assert.deepEqual(cols.map((c) => customColumnCell(c.path, list.items[0])), ['b', 'i1,i2', 'x', 'c1,c2']);
    assert.deepEqual(cols.map((c) => customColumnCell(c.path, list.items[1])), ['a', 'i', '<none>', 'c']);
    assert.throws(() => parseCustomColumns('NAME'), /expected <header>:<json-path-expr>/);
    assert.throws(() => parseCustomColumns(''), /no custom columns given/);
  });
  it('--sort-by: bare or braced paths, numbers by value, missing first', () => {
    assert.deepEqual(sortByPath(list.items, sortPath('.metadata.name')).map((o) => o.metadata.name), ['a', 'b']);
    assert.deepEqual(sortByPath(list.items, sortPath('{.status.restarts}')).map((o) => o.metadata.name), ['a', 'b']);
    const nums = [{ n: 10 }, { n: 9 }, {}, { n: 100 }];
    assert.deepEqual(sortByPath(nums, sortPath('.n')), [{}, { n: 9 }, { n: 10 }, { n: 100 }], '10 after 9: numbers, not text');
    assert.throws(() => sortPath(''), /--sort-by needs a JSONPath expression/);
  });
  it('-o: plain formats, jsonpath=, custom-columns=; anything else lists what is allowed', () => {
    assert.equal(parseGetOutput('wide').format, 'wide');
    assert.equal(parseGetOutput('jsonpath={.kind}').format, 'jsonpath');
    assert.equal(parseGetOutput('custom-columns=N:.metadata.name').format, 'custom-columns');
    assert.throws(() => parseGetOutput('jsonpath'), /no template given/);
    assert.throws(() => parseGetOutput('xml'), /output format "xml", allowed formats are: json,yaml,wide,name,jsonpath=\.\.\.,custom-columns=\.\.\./);
  });
  it('tables per kind with kind/name, label columns, LABELS, and no headers', () => {
    const pod = (name: string, labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, labels, creationTimestamp: new Date(0).toISOString() }, spec: { containers: [{ name: 'c', image: 'i' }] } }) as unknown as ApiObject;
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', creationTimestamp: new Date(0).toISOString() }, data: { a: '1' } } as unknown as ApiObject;
    const out = renderGet([{ kind: kindInfo('Pod'), items: [pod('web', { 'app.kubernetes.io/name': 'web', tier: 'front' })] }, { kind: kindInfo('ConfigMap'), items: [cm] }], { format: undefined }, { withKind: true, labelColumns: ['app.kubernetes.io/name'], showLabels: true, now: 60_000 });
    const [pods, cms] = out.split('\n\n');
    assert.match(pods!, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+NAME\s+LABELS\npod\/web\s+0\/1\s+Pending\s+0\s+60s\s+web\s+app\.kubernetes\.io\/name=web,tier=front$/);
    assert.match(cms!, /^NAME\s+DATA\s+AGE\s+NAME\s+LABELS\nconfigmap\/cfg\s+1\s+60s\s+<none>\n$/);
    const bare = renderGet([{ kind: kindInfo('Pod'), items: [pod('a', {}), pod('b', {})] }], { format: undefined }, { noHeaders: true, now: 60_000 });
    assert.deepEqual(bare.trimEnd().split('\n').map((l) => l.split(/\s+/)[0]), ['a', 'b']);
  });
});

describe('--dry-run, --since, log parameters', () => {
  it('--dry-run values as kubectl takes them', () => {
    assert.equal(parseDryRun(undefined), undefined);
    assert.equal(parseDryRun('none'), undefined);
    assert.equal(parseDryRun('client'), 'client');
    assert.equal(parseDryRun('server'), 'server');
    assert.throws(() => parseDryRun('true'), /Invalid dry-run value \(true\)\. Must be "none", "server", or "client"\./);
    assert.equal(dryRunSuffix('server'), ' (server dry run)');
  });
  it('client dry run sends no write; server dry run adds dryRun=All to writes only', async () => {
    const seen: string[] = [];
    const fetch = (async (url: string, init: RequestInit) => {
      seen.push(`${init.method} ${url}`);
      return new Response('{"metadata":{"name":"x"}}', { status: 200 });
    }) as unknown as typeof globalThis.fetch;
    const client = new ApiClient({ server: 'http://h', dryRun: 'client', fetch });
    await client.create('/api/v1/namespaces', { metadata: { name: 'x' } });
    await client.delete('/api/v1/namespaces/x');
    assert.deepEqual(seen, ['GET http://h/api/v1/namespaces/x'], 'a delete checks the object exists, nothing else goes out');
    seen.length = 0;
    const server = new ApiClient({ server: 'http://h', dryRun: 'server', fetch });
    await server.get('/api/v1/namespaces');
    await server.replace('/api/v1/namespaces/x', {});
    assert.deepEqual(seen, ['GET http://h/api/v1/namespaces', 'PUT http://h/api/v1/namespaces/x?dryRun=All']);
  });
  it('--since durations and the log query', () => {
    assert.equal(parseSince('30s'), 30);
    assert.equal(parseSince('5m'), 300);
    assert.equal(parseSince('1h30m'), 5400);
    for (const bad of ['', '0s', '5', 'soon', '-5m']) assert.throws(() => parseSince(bad), CliError, bad);
    assert.deepEqual(logQuery({ previous: true, since: '2m', timestamps: true }), { previous: 'true', sinceSeconds: 120, sinceTime: undefined, timestamps: 'true' });
    assert.throws(() => logQuery({ since: '1m', sinceTime: '2024-01-01T00:00:00Z' }), /at most one of --since and --since-time/);
    assert.throws(() => logQuery({ sinceTime: 'yesterday' }), /invalid --since-time/);
    assert.equal(prefixLines('a\nb\npartial', '[pod/x/c] '), '[pod/x/c] a\n[pod/x/c] b\n[pod/x/c] partial\n');
    assert.equal(prefixLines('', '[p] '), '');
  });
});

describe('edit', () => {
  it('the buffer has kubectl\'s header and the errors as comments; comments are dropped on read', () => {
    const buf = editBuffer({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }, 'yaml', ['pods "x" was not valid:', '* spec: bad']);
    assert.match(buf, /^# Please edit the object below\. Lines beginning with a '#' will be ignored,\n/);
    assert.match(buf, /^# pods "x" was not valid:\n# \* spec: bad\n#\napiVersion: v1\n/m);
    assert.deepEqual(readEdited(buf, 'yaml'), { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } });
    assert.equal(readEdited('# only comments\n\n', 'yaml'), undefined);
    assert.throws(() => readEdited('a: [1,', 'yaml'), /the edited file is not valid YAML/);
    assert.throws(() => readEdited('- 1\n', 'yaml'), /must hold one object/);
    assert.deepEqual(readEdited(editBuffer({ a: 1 }, 'json'), 'json'), { a: 1 });
  });
  it('the user\'s change is a merge patch applied to the object as it is now', () => {
    const shown = { metadata: { name: 'x', resourceVersion: '2', labels: { a: '1', b: '2' } }, spec: { replicas: 1, list: [1, 2] } };
    const saved = { metadata: { name: 'x', resourceVersion: '2', labels: { a: '1' } }, spec: { replicas: 3, list: [1] } };
    const patch = mergePatchBetween(shown, saved);
    assert.deepEqual(patch, { metadata: { labels: { b: null } }, spec: { replicas: 3, list: [1] } });
    const now = { metadata: { name: 'x', resourceVersion: '9', labels: { a: '1', b: '2' } }, spec: { replicas: 1, list: [1, 2] }, status: { ready: 1 } };
    assert.deepEqual(applyMergePatch(now, patch), { metadata: { name: 'x', resourceVersion: '9', labels: { a: '1' } }, spec: { replicas: 3, list: [1] }, status: { ready: 1 } });
  });
});

describe('global flags and warnings', () => {
  it('a flag before the verb fills the verb\'s own, unless the verb was given it', async () => {
    const root = new Command('drover').enablePositionalOptions().exitOverride();
    for (const [flags, d] of GLOBAL_OPTIONS) root.option(flags, d);
    root.hook('preAction', inheritGlobalOptions);
    let got: Record<string, unknown> = {};
    root.command('get').argument('<kind>').option('-n, --namespace <ns>', 'ns', 'default').option('--server <url>').action((_k, o) => void (got = o));
    root.command('version').action(() => void (got = { ran: true }));
    await root.parseAsync(['-n', 'prod', '--server', 'https://a', 'get', 'pods'], { from: 'user' });
    assert.deepEqual(got, { namespace: 'prod', server: 'https://a' });
    await root.parseAsync(['-n', 'prod', 'get', 'pods', '-n', 'dev'], { from: 'user' });
    assert.equal(got.namespace, 'dev', 'the later flag wins');
    await root.parseAsync(['-n', 'prod', 'version'], { from: 'user' });
    assert.deepEqual(got, { ran: true }, 'a verb without -n ignores it');
  });
  it('Warning headers: RFC 7234 form, several in one header, escapes; printed once each as kubectl does', async () => {
    assert.deepEqual(parseWarningHeader('299 - "a \\"quoted\\" field", 299 - "second, with a comma"'), ['a "quoted" field', 'second, with a comma']);
    assert.deepEqual(parseWarningHeader('plain text'), ['plain text']);
    const headers = new Headers();
    headers.append('warning', '299 - "spec.x: ignored"');
    headers.append('warning', '299 - "spec.y: ignored"');
    headers.append('warning', '299 - "spec.x: ignored"');
    const printed: string[] = [];
    const { makeContext } = await import('../../src/cli/context.js');
    const ctx = makeContext({ stdout: () => {}, stderr: (s) => void printed.push(s), env: {} });
    const client = new ApiClient({ server: 'http://h', onWarning: ctx.warn, fetch: (async () => new Response('{}', { status: 200, headers })) as unknown as typeof fetch });
    await client.get('/api/v1/pods');
    assert.deepEqual(printed, ['Warning: spec.x: ignored\n', 'Warning: spec.y: ignored\n']);
    ctx.markWarned('spec.z: ignored');
    ctx.warn('spec.z: ignored');
    assert.equal(printed.length, 2, 'a warning already shown in apply\'s own form is not repeated');
  });
});
