/**
 * The command door over the real API handler (LevelDB store, tokens, admission, audit), no broker: each
 * verb's effect and reply, the API's own codes and messages, the audit mark of the MQTT door (which no
 * HTTP caller can set), an apply that writes nothing when one document is bad, bounded logs and drain.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ApiServer } from '../../server/api/server.js';
import type { AuditRecord } from '../../server/audit/log.js';
import { TokenStore } from '../../server/auth/tokens.js';
import { withAdmission } from '../../server/admission/store.js';
import { CommandDoor, type IncomingCommand } from '../../server/commands/door.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';
import { LOGS_MAX_BYTES } from '../../src/contract/commands.js';
import { topics } from '../../src/contract/topics.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';

let dir: string;
let level: LevelStore;
let store: Store;
let tokens: TokenStore;
let api: ApiServer;
let door: CommandDoor;
const audit: AuditRecord[] = [];
const published: Array<{ topic: string; reply: any; correlationData?: Buffer }> = [];
/** What the door logged (debug and up), one JSON line each. */
const logLines: string[] = [];
/** While set, `logs` waits for it: a pod whose node is slow to answer. */
let logsGate: Promise<void> | undefined;
const bigLog = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(40)}`).join('\n') + '\n';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-door-'));
  level = await LevelStore.open({ path: join(dir, 'store'), logger: silentLogger });
  store = withAdmission(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  tokens = await TokenStore.open({ dataDir: dir, logger: silentLogger });
  api = new ApiServer({ store, logger: silentLogger, tokens, audit: { write: (r) => audit.push(r) }, logs: async () => {
      await logsGate;
      return bigLog;
    }, ready: () => true });
  const logger = createLogger({ name: 'door-test', level: 'debug', destination: { write: (line: string) => void logLines.push(line) } });
  door = new CommandDoor({ api, tokens, logger, publish: async (topic, payload, opts) => void published.push({ topic, reply: JSON.parse(payload), ...(opts.correlationData ? { correlationData: opts.correlationData } : {}) }) });
});
after(async () => {
  await door.close();
  await api.close();
  await level.close();
  await rm(dir, { recursive: true, force: true });
});

/** As the embedded broker hands a command over: with the connection's identity. */
function asOperator(clientId: string, token: string, tokenId = 'tok'): NonNullable<IncomingCommand['operator']> {
  return { clientId, token, tokenId, mayUseReplyName: (n) => n === clientId };
}

async function send(verb: string, request: unknown, from: Partial<IncomingCommand> = { operator: asOperator('ops', tokens.adminToken) }): Promise<any> {
  const before = published.length;
  door.handle({ verb, payload: Buffer.from(typeof request === 'string' ? request : JSON.stringify(request)), retain: false, ...from });
  for (let i = 0; i < 500 && published.length === before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(published.length, before + 1, `one reply to ${verb}`);
  return published.at(-1)!;
}

const deployment = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: 'localhost/x:1' }] } }, ...extra },
});

test('apply: several YAML documents; one invalid document and nothing is written, the error names its field', async () => {
  const bad = `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: cm-1 }\ndata: { a: "1" }\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec: { replicas: "many" }\n`;
  const r = await send('apply', { transaction: 'a1', manifest: bad });
  assert.equal(r.topic, topics.commandResponse('apply', 'ops'));
  assert.equal(r.reply.ok, false);
  assert.equal(r.reply.error.code, 422);
  assert.match(r.reply.error.field, /^spec\./);
  assert.equal(await store.get('ConfigMap', 'default', 'cm-1'), undefined, 'the valid first document was not written either');
  const good = await send('apply', { transaction: 'a2', manifest: [deployment('web'), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm-1' }, data: { a: '1' } }] });
  assert.deepEqual(good.reply.data.objects.map((o: any) => `${o.kind}/${o.name} ${o.result}`), ['Deployment/web created', 'ConfigMap/cm-1 created']);
});

test('the audit record of a command says it came over MQTT, from which client; an HTTP call with any header does not', async () => {
  audit.length = 0;
  await send('scale', { transaction: 's1', kind: 'deploy', name: 'web', replicas: 2 });
  const rec = audit.find((a) => a.verb === 'update' && a.resource.name === 'web') as AuditRecord & { who: { via?: unknown } };
  assert.deepEqual(rec.who.via, { door: 'mqtt', clientId: 'ops' });
  assert.equal((await store.get('Deployment', 'default', 'web'))!.spec.replicas, 2);
  const { url } = await api.listen('127.0.0.1', 0);
  audit.length = 0;
  const res = await fetch(`${url}/apis/apps/v1/namespaces/default/deployments/nope`, { method: 'DELETE', headers: { authorization: `Bearer ${tokens.adminToken}`, via: 'mqtt', 'x-drover-via': '{"door":"mqtt"}' } });
  assert.equal(res.status, 404);
  assert.equal((audit[0]!.who as { via?: unknown }).via, undefined);
});

test('rollout pause, restart refused while paused (409), resume, restart, status', async () => {
  assert.deepEqual((await send('rollout-pause', { transaction: 'p', name: 'web' })).reply.data, { kind: 'Deployment', name: 'web', namespace: 'default', paused: true, changed: true });
  const refused = (await send('rollout-restart', { transaction: 'r0', name: 'web' })).reply;
  assert.deepEqual([refused.ok, refused.error.code], [false, 409]);
  assert.equal((await send('rollout-resume', { transaction: 'u', name: 'web' })).reply.data.changed, true);
  const restarted = (await send('rollout-restart', { transaction: 'r1', name: 'web' })).reply;
  assert.equal(restarted.ok, true);
  assert.equal((await store.get('Deployment', 'default', 'web'))!.spec.template.metadata?.annotations?.['kubectl.kubernetes.io/restartedAt'], restarted.data.restartedAt);
  const status = (await send('rollout-status', { transaction: 'st', name: 'web' })).reply;
  assert.deepEqual([status.ok, status.data.done], [true, false]);
  const ds = (await send('rollout-undo', { transaction: 'un', kind: 'configmap', name: 'cm-1' })).reply;
  assert.deepEqual([ds.error.code, ds.error.field], [422, 'kind']);
});

test('cordon, and a drain that kubectl\'s rules refuse (a pod no controller would re-create): 409, the pod stays', async () => {
  await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: {} } as never);
  await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'bare', namespace: 'default' }, spec: { nodeName: 'edge-1', containers: [{ name: 'c', image: 'localhost/x:1' }] } } as never);
  assert.deepEqual((await send('cordon', { transaction: 'c', node: 'edge-1' })).reply.data, { node: 'edge-1', unschedulable: true, changed: true });
  const d = (await send('drain', { transaction: 'd', node: 'edge-1', timeoutSeconds: 5 })).reply;
  assert.deepEqual([d.ok, d.error.code], [false, 409]);
  assert.match(d.error.message, /cannot delete Pods that declare no controller.*default\/bare/);
  assert.ok(await store.get('Pod', 'default', 'bare'));
  const forced = (await send('drain', { transaction: 'd2', node: 'edge-1', force: true, timeoutSeconds: 5 })).reply;
  assert.deepEqual(forced.data.evicted, ['default/bare']);
  assert.equal(await store.get('Pod', 'default', 'bare'), undefined);
  assert.equal((await send('uncordon', { transaction: 'uc', node: 'edge-1' })).reply.data.changed, true);
});

test('logs: at most the last 256 KiB, from a whole line; tailLines above 1000 refused', async () => {
  await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'localhost/x:1' }] } } as never);
  const r = (await send('logs', { transaction: 'l', pod: 'p', tailLines: 1000 })).reply;
  assert.equal(r.data.truncated, true);
  assert.ok(Buffer.byteLength(r.data.log) <= LOGS_MAX_BYTES);
  assert.match(r.data.log, /^line \d+ x+\n/);
  assert.ok(r.data.log.endsWith('line 19999 ' + 'x'.repeat(40) + '\n'));
  assert.equal((await send('logs', { transaction: 'l2', pod: 'p', tailLines: 5000 })).reply.error.field, 'tailLines');
});

test('a view token: reads allowed, writes 403 with roles.ts\'s text; a revoked token 401 with the API\'s message', async () => {
  const v = await tokens.createApi({ role: 'view' });
  const viewer = { operator: asOperator('viewer', v.token, v.id) };
  assert.equal((await send('get', { transaction: 'g', kind: 'deployments' }, viewer)).reply.data.items.length, 1);
  // Secrets: the view role sees the keys, never the values, as over HTTP.
  const secret = Buffer.from('s3cret-value').toString('base64');
  assert.equal((await send('apply', { transaction: 'sec', manifest: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, data: { password: secret } } })).reply.ok, true);
  const seen = (await send('get', { transaction: 'gs', kind: 'secret', name: 'db' }, viewer)).reply;
  assert.deepEqual(Object.keys(seen.data.data), ['password']);
  assert.notEqual(seen.data.data.password, secret);
  assert.ok(!JSON.stringify(seen).includes(secret));
  const del = (await send('delete', { transaction: 'x', kind: 'deployment', name: 'web' }, viewer)).reply;
  assert.deepEqual([del.error.code, del.error.reason], [403, 'Forbidden']);
  assert.match(del.error.message, new RegExp(`forbidden: token ${v.id} \\(role view\\) may not delete deployments "web" in namespace default`));
  assert.ok(await store.get('Deployment', 'default', 'web'));
  await tokens.revoke(v.id);
  const gone = (await send('get', { transaction: 'g2', kind: 'deployments' }, viewer)).reply;
  assert.deepEqual([gone.error.code, gone.error.reason], [401, 'Unauthorized']);
  assert.match(gone.error.message, /a valid bearer token is required: token \w+ is revoked/);
});

test('external broker: token from the request, reply to the MQTT 5 response topic with its correlation data; no token, no route', async () => {
  const r = await send('get', { transaction: 'e1', token: tokens.adminToken, kind: 'nodes' }, { responseTopic: topics.commandResponse('get', 'ext'), correlationData: Buffer.from('c-1') });
  assert.deepEqual([r.topic, r.reply.ok, r.correlationData?.toString()], [topics.commandResponse('get', 'ext'), true, 'c-1']);
  const n = await send('get', { transaction: 'e2', clientId: 'ext', kind: 'nodes' }, {});
  assert.deepEqual([n.topic, n.reply.error.code, n.reply.error.field], [topics.commandResponse('get', 'ext'), 401, 'token']);
  const into = await send('get', { transaction: 'e3', token: tokens.adminToken, clientId: 'ext', kind: 'nodes' }, { responseTopic: topics.desired('edge-1') });
  assert.deepEqual([into.topic, into.reply.error.code], [topics.commandResponse('get', 'ext'), 403]);
});

test('fleet-status goes to GET /drover/v1/fleet/status: without that route, the API\'s 404', async () => {
  const r = (await send('fleet-status', { transaction: 'f' })).reply;
  assert.deepEqual([r.ok, r.error.code], [false, 404]);
});

/** Waits until `n` replies have been published since `from` (the door answers in the background). */
async function replies(from: number, n: number): Promise<typeof published> {
  for (let i = 0; i < 1000 && published.length - from < n; i++) await new Promise((r) => setTimeout(r, 10));
  return published.slice(from);
}

test('apply: a view token is refused (403) before its manifest is parsed, a made-up token (external broker) 401; an admin\'s 20,000-key manifest gets its duplicate key named', async () => {
  // ~830 KB, one ConfigMap of 20,000 keys whose last key repeats the first: parsed, it is a duplicate-key
  // error, so a 403/401 here says the refusal came before the parse (review10 F3: a 650 KB apply stalled the server 75 s).
  const keys = Array.from({ length: 20_000 }, (_, i) => `  k${i}: ${'x'.repeat(30)}`).join('\n');
  const manifest = `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: huge }\ndata:\n${keys}\n  k0: again\n`;
  const v = await tokens.createApi({ role: 'view' });
  const viewer = (await send('apply', { transaction: 'big-v', manifest }, { operator: asOperator('viewer2', v.token, v.id) })).reply;
  assert.deepEqual([viewer.ok, viewer.error.code, viewer.error.reason], [false, 403, 'Forbidden']);
  assert.match(viewer.error.message, new RegExp(`^forbidden: token ${v.id} \\(role view\\) may not create objects: the view role may only get, list, watch and read logs$`));
  const fake = (await send('apply', { transaction: 'big-x', token: `abcdef.${'A'.repeat(32)}`, clientId: 'ext', manifest }, {})).reply;
  assert.deepEqual([fake.error.code, fake.error.field], [401, 'token']);
  assert.match(fake.error.message, /^a valid bearer token is required: /);
  const admin = (await send('apply', { transaction: 'big-a', manifest })).reply;
  assert.equal(admin.ok, false);
  assert.match(admin.error.message, /manifest: line 20005: duplicate key/);
  assert.equal(await store.get('ConfigMap', 'default', 'huge'), undefined);
});

test('apply: more than 500 documents, or flow collections nested past 64, refused naming manifest before parsing', async () => {
  const many = Array.from({ length: 501 }, (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: m${i} }\n`).join('---\n');
  const r = (await send('apply', { transaction: 'many', manifest: many })).reply;
  assert.deepEqual([r.error.code, r.error.field], [422, 'manifest']);
  assert.match(r.error.message, /more than 500 documents/);
  assert.equal(await store.get('ConfigMap', 'default', 'm0'), undefined);
  const deep = (await send('apply', { transaction: 'deep', manifest: `${'['.repeat(100_000)}${']'.repeat(100_000)}` })).reply;
  assert.deepEqual([deep.error.code, deep.error.field], [422, 'manifest']);
  assert.match(deep.error.message, /nested more than 64 levels/);
});

test('one token flooding the door with slow commands from 16 client ids fills only its own share: another operator is answered meanwhile', async () => {
  const v = await tokens.createApi({ role: 'view' });
  let open!: () => void;
  logsGate = new Promise((r) => (open = r));
  const start = published.length;
  // review10 F4: 16 client ids × 16 `logs` of a pod whose node does not answer, 256 commands (the whole queue before).
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) door.handle({ verb: 'logs', payload: Buffer.from(JSON.stringify({ transaction: `f${i}-${j}`, pod: 'p' })), retain: false, operator: asOperator(`flood${i}`, v.token, v.id) });
  }
  const refused = await replies(start, 240);
  assert.equal(refused.length, 240, 'all but the token\'s 16 answered at once');
  assert.ok(refused.every((p) => p.reply.error?.code === 429));
  assert.match(refused[0]!.reply.error.message, /too many commands in flight \(at most 16 for one token, over all its client ids\)/);
  // Another token's command is answered while the flood still waits on the node.
  const mine = await send('get', { transaction: 'mine', kind: 'deployments' });
  assert.equal(mine.reply.ok, true);
  assert.equal(published.length - start, 241, 'none of the flood\'s 16 answered yet');
  open();
  logsGate = undefined;
  const all = await replies(start, 257);
  assert.equal(all.filter((p) => p.reply.ok && p.reply.data.log !== undefined).length, 16);
});

test('door logs carry no token: the bootstrap admin token as transaction, verb or clientId, an API token as transaction', async () => {
  const v = await tokens.createApi({ role: 'view' });
  logLines.length = 0;
  // review10 F8: maskTokens knows "<id>.<secret>", not the bootstrap admin token's form.
  assert.equal((await send('cordon', { transaction: tokens.adminToken, node: 'nope' })).reply.error.code, 404);
  assert.equal((await send('get', { transaction: v.token, kind: 'nodes' })).reply.ok, true);
  assert.equal((await send(tokens.adminToken, { transaction: 'v' })).reply.error.code, 404);
  assert.equal((await send('get', { transaction: 'c', token: v.token, clientId: tokens.adminToken, kind: 'nodes' }, {})).reply.ok, true);
  const text = logLines.join('');
  assert.ok(logLines.length >= 4, 'each command was logged');
  assert.ok(!text.includes(tokens.adminToken), 'no bootstrap admin token in the logs');
  assert.ok(!text.includes(v.token.split('.')[1]!), 'no API token secret in the logs');
  assert.match(text, /<admin-token>/);
});
