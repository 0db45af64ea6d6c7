/**
 * MQTT commands as a user meets them: the README's mosquitto_pub/mosquitto_sub lines, run by bash
 * against a test server's embedded broker (TLS) and against a real Mosquitto (external broker mode),
 * then the refusals (malformed JSON, unknown verb, missing field, a view token's write), each answered
 * with an error naming the cause while the store stays as it was; and an operator trying to become the
 * server or an agent, read someone else's replies or an agent's inbox, or send a reply into a node's topics.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { topics } from '../../src/contract/topics.js';
import { silentLogger } from '../../src/util/logger.js';
import { connectRefusal, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { readmeCommandBlock, replies, runBash, startOperatorMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

const deployment = (name: string) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: `localhost/${name}:1` }] } } },
});

/**
 * What a refused command could have changed: every object of the kinds the commands write, by name, with
 * its generation and spec (controllers keep writing status and pods meanwhile; those are not compared).
 */
async function storeState(t: TestServer): Promise<string> {
  const out: string[] = [];
  for (const path of ['/apis/apps/v1/deployments', '/api/v1/nodes', '/api/v1/namespaces', '/api/v1/configmaps']) {
    const list = (await t.api('GET', path)).body;
    for (const o of list.items) out.push(`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name} generation ${o.metadata.generation ?? '-'} ${JSON.stringify(o.spec ?? {})}`);
  }
  return out.sort().join('\n');
}

async function viewToken(t: TestServer): Promise<string> {
  const r = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'mqtt test' });
  assert.equal(r.status, 201, r.text);
  return r.body.token;
}

/** One request, its reply (on the default reply topic), with mqtt.js: for the attacks, faster than a process each. */
async function ask(c: MqttClient, verb: string, request: unknown): Promise<any> {
  const topic = topics.commandResponse(verb, c.options.clientId!);
  await c.subscribeAsync(topic, { qos: 1 });
  const reply = new Promise<any>((resolve) => {
    const on = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      c.off('message', on);
      resolve(JSON.parse(payload.toString()));
    };
    c.on('message', on);
  });
  await c.publishAsync(topics.command(verb), typeof request === 'string' ? request : JSON.stringify(request), { qos: 1 });
  return reply;
}

describe('MQTT commands on the embedded broker (TLS)', () => {
  let t: TestServer;
  let home: string;
  let env: Record<string, string>;
  const port = () => new URL(t.mqttUrl).port;
  const clients: MqttClient[] = [];
  const operator = async (clientId: string, token: string) => {
    const c = await mqtt.connectAsync(t.mqttUrl, { clientId, username: clientId, password: token, ca: t.ca, protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(c);
    return c;
  };

  before(async () => {
    t = await startTestServer();
    home = await mkdtemp(join(tmpdir(), 'drover-mqtt-home-'));
    env = { HOME: home, DROVER_MQTT_HOST: '127.0.0.1', DROVER_MQTT_PORT: port(), DROVER_CA: t.caFile, DROVER_MQTT_ID: 'ops-alice', DROVER_TOKEN: t.token };
  });
  after(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => {});
    await t?.stop();
    await rm(home, { recursive: true, force: true });
  });

  test("the README's lines: get nodes, apply a YAML Deployment, scale, a new image, rollout undo, and a request missing a field", async () => {
    const { script, exported } = await readmeCommandBlock('embedded broker');
    assert.deepEqual(exported.filter((v) => !(v in env)), [], 'every variable the README exports is given');
    const r = await runBash(script, { cwd: home, env });
    assert.equal(r.code, 0, r.stderr);
    const got = replies(r.stdout);
    assert.deepEqual(got.map((x) => [x.transaction, x.ok]), [['nodes-1', true], ['apply-web', true], ['scale-web', true], ['apply-web-2', true], ['undo-web', true], ['bad-scale', false]], r.stdout);
    assert.equal(got[0]!.data.kind, 'NodeList');
    assert.deepEqual(got[1]!.data.objects, [{ kind: 'Deployment', name: 'web', namespace: 'default', result: 'created' }]);
    assert.deepEqual(got[4]!.data, { kind: 'Deployment', name: 'web', namespace: 'default', revision: 1, rolledBack: true });
    assert.deepEqual(got[5]!.error, { code: 422, reason: 'Invalid', message: 'invalid scale request: replicas: required', field: 'replicas' });
    const web = (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
    assert.equal(web.spec.template.spec.containers[0].image, 'localhost/web:1', 'rolled back to revision 1');
    // The option files hold the token: private to the user.
    const mode = (await import('node:fs')).statSync(join(home, '.config', 'mosquitto_pub')).mode & 0o777;
    assert.equal(mode, 0o600);
    // Audited as the HTTP calls they are, with the door and client they came through; no token in the log.
    const audit = await readFile(join(t.dataDir, 'audit.log'), 'utf8');
    const scale = audit.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.verb === 'update' && e.resource.name === 'web');
    assert.deepEqual(scale?.who.via, { door: 'mqtt', clientId: 'ops-alice' });
    assert.ok(!audit.includes(t.token.split('.')[1] ?? t.token), 'no token in the audit log');
  });

  test('malformed JSON, an unknown verb, a missing field, a view token writing: each an error reply naming the cause; nothing stored changes', async () => {
    const view = await viewToken(t);
    const before = await storeState(t);
    // Option files of the README's shape; the view token as the password on the command line (a test's own argv).
    const script = `
      mkdir -p ~/.config && printf -- '-h %s\\n-p %s\\n--cafile %s\\n-u ops-bob\\n-q 1\\n' "$DROVER_MQTT_HOST" "$DROVER_MQTT_PORT" "$DROVER_CA" | tee ~/.config/mosquitto_pub > ~/.config/mosquitto_sub
      sub() { mosquitto_sub -i ops-bob-replies -c -t "drover/v1/cmd/+/response/ops-bob" "$@"; }
      sub -E -P "$VIEW"
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/apply -m '{"transaction": "t1", "manifest": '
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/explode -m '{"transaction":"t2","kind":"nodes"}'
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/delete -m '{"transaction":"t3","kind":"deployment"}'
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/scale -m '{"transaction":"t4","kind":"deployment","name":"web","replicas":7}'
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/delete -m '{"transaction":"t5","kind":"deployment","name":"web"}'
      mosquitto_pub -i ops-bob -P "$VIEW" -t drover/v1/cmd/get -m '{"kind":"nodes"}'
      mosquitto_pub -i ops-bob -P "$VIEW" -r -t drover/v1/cmd/delete -m '{"transaction":"t7","kind":"deployment","name":"web"}'
      sub -P "$VIEW" -C 7 -W 30`;
    const r = await runBash(script, { cwd: home, env: { ...env, VIEW: view } });
    assert.equal(r.code, 0, r.stderr);
    const got = replies(r.stdout);
    const byTx = (tx: string | null) => got.find((x) => x.transaction === tx)?.error;
    assert.equal(got.length, 7, r.stdout);
    assert.ok(got.every((x) => x.ok === false), r.stdout);
    assert.equal(got.find((x) => x.transaction === null && /JSON/.test(x.error!.message))?.error?.code, 400);
    assert.match(byTx('t2')!.message, /unknown command "explode"/);
    assert.deepEqual([byTx('t3')!.code, byTx('t3')!.field], [422, 'name']);
    for (const tx of ['t4', 't5']) {
      assert.equal(byTx(tx)!.code, 403, tx);
      assert.match(byTx(tx)!.message, /forbidden: token \w+ \(role view\) may not (update|delete) deployments "web" in namespace default/, tx);
    }
    assert.equal(got.find((x) => x.transaction === null && x.error!.field === 'transaction')?.error?.code, 422);
    assert.deepEqual([byTx('t7')!.code, byTx('t7')!.field], [400, 'retain']);
    assert.equal(await storeState(t), before, 'nothing stored changed');
    // A retained command is not kept either: a new subscriber of the request topic would have got it (the server may read it).
  });

  test('an operator cannot be the server or an agent, read others\' replies or agents\' topics, or aim a reply at a node', async () => {
    for (const clientId of ['drover-server', 'drover-agent-edge-1', 'drover-agent-', 'a/b', 'a+b', '#']) {
      assert.equal(await connectRefusal(t.mqttUrl, { clientId, username: 'x', password: t.token, ca: t.ca }), '4', clientId);
    }
    // A certificate of another CA is refused even with a valid token: a presented certificate must be the cluster's.
    const foreign = await loadOrCreatePki({ dir: join(home, 'other-ca'), sans: serverSans(['127.0.0.1']), logger: silentLogger });
    assert.ok(await connectRefusal(t.mqttUrl, { clientId: 'ops-mallory', username: 'x', password: t.token, ca: t.ca, key: foreign.serverClient.key, cert: foreign.serverClient.cert }));
    // A wrong token, and no token.
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'ops-eve', username: 'x', password: 'abcdef.' + 'x'.repeat(32), ca: t.ca }), '4');
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'ops-eve', ca: t.ca }), '4');
    // The server kept its link: it answers, and is ready.
    assert.equal((await fetch(`${t.apiUrl}/readyz`)).status, 200);

    // ops-alice: the admin token's client id (as in the README); ops-eve: a view token's.
    await operator('ops-alice', t.token);
    const view = await viewToken(t);
    const eve = await operator('ops-eve', view);
    // ops-alice's replies (another token's client id), by name or wildcard; the requests; agents' topics; $SYS; everything.
    for (const filter of [topics.commandResponse('+', 'ops-alice'), topics.commandResponse('get', 'ops-alice'), 'drover/v1/cmd/+/response/+', 'drover/v1/cmd/#', topics.allCommands(), topics.desired('edge-1'), 'drover/v1/nodes/+/desired', 'drover/v1/nodes/+/req/+', '$SYS/#', '#']) {
      await assert.rejects(eve.subscribeAsync(filter, { qos: 1 }), /Subscribe error/, filter);
    }
    // Its own replies, the fleet summary and node states are allowed; the retained summary arrives at once.
    const summary = new Promise<any>((resolve) => eve.on('message', (topic, p) => topic === topics.fleetSummary() && resolve(JSON.parse(p.toString()))));
    for (const filter of [topics.commandResponse('+', 'ops-eve'), topics.fleetSummary(), topics.allNodeStates()]) {
      assert.deepEqual((await eve.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos), [1], filter);
    }
    assert.equal(typeof (await summary), 'object');
    // fleet-status is GET /drover/v1/fleet/status through the API: a view token may read it.
    const fleet = await ask(eve, 'fleet-status', { transaction: 'fleet' });
    assert.equal(fleet.ok, true, JSON.stringify(fleet));
    // ops-alice is the admin token's client id: the view token cannot connect under it (and kick it).
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'ops-alice', username: 'x', password: view, ca: t.ca }), '5');

    // A node listening on its own inbox: a reply must never land there.
    const node = await t.joinNode('edge-1');
    const device = await mqtt.connectAsync(node.url, node);
    clients.push(device);
    const inbox: string[] = [];
    device.on('message', (topic, payload) => inbox.push(`${topic} ${payload.toString().slice(0, 100)}`));
    await device.subscribeAsync(topics.desired('edge-1'), { qos: 1 });
    for (const replyTo of [topics.desired('edge-1'), topics.nodeState('edge-1'), topics.fleetSummary(), topics.commandResponse('get', 'ops-alice'), 'drover/v1/cmd/get/response/+']) {
      const reply = await ask(eve, 'get', { transaction: `r-${replyTo}`, kind: 'nodes', replyTo });
      assert.deepEqual([reply.ok, reply.error.code, reply.error.field], [false, 403, 'replyTo'], replyTo);
    }
    // A reply topic of its own works, and the node heard nothing of all this.
    const own = `${topics.commandResponse('get', 'ops-eve')}/dashboard`;
    await eve.subscribeAsync(own, { qos: 1 });
    const got = new Promise<any>((resolve) => eve.on('message', (topic, p) => topic === own && resolve(JSON.parse(p.toString()))));
    await eve.publishAsync(topics.command('get'), JSON.stringify({ transaction: 'mine', kind: 'nodes', replyTo: own }), { qos: 1 });
    assert.deepEqual([(await got).transaction, (await got).ok], ['mine', true]);
    assert.deepEqual(inbox.filter((m) => m.includes('transaction')), []);
    // Publishing anywhere but a command topic closes the operator's connection (as aedes refuses a publish).
    const closed = new Promise<void>((r) => eve.once('close', () => r()));
    eve.publish(topics.desired('edge-1'), '{"pods":[]}', { qos: 1 });
    await closed;
    assert.deepEqual(inbox.filter((m) => m.includes('"pods":[]}')), []);
  });

  test('a client with more commands in flight than allowed gets 429 replies at once; none is dropped', async () => {
    // The first command waits for a node that never answers (logs of a pod bound to a node with no agent):
    // the client's next 15 wait behind it, the 24 after those are refused at once.
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'stuck' }, spec: { nodeName: 'ghost', containers: [{ name: 'c', image: 'localhost/x:1' }] } };
    assert.equal((await t.api('POST', '/api/v1/namespaces/default/pods', pod)).status, 201);
    const c = await operator('ops-burst', t.token);
    await c.subscribeAsync(topics.commandResponse('+', 'ops-burst'), { qos: 1 });
    const got: any[] = [];
    c.on('message', (_t, p) => got.push(JSON.parse(p.toString())));
    await c.publishAsync(topics.command('logs'), JSON.stringify({ transaction: 'slow', pod: 'stuck' }), { qos: 1 });
    await Promise.all(Array.from({ length: 39 }, (_, i) => c.publishAsync(topics.command('get'), JSON.stringify({ transaction: `b${i + 1}`, kind: 'nodes' }), { qos: 1 })));
    await waitFor('24 refusals', async () => got.length === 24);
    assert.deepEqual(got.map((x) => [x.transaction, x.error?.code]), Array.from({ length: 24 }, (_, i) => [`b${i + 16}`, 429]));
    assert.match(got[0].error.message, /too many commands in flight \(at most 16 for one client/);
  });
});

describe('MQTT commands through an external Mosquitto (the README set-up)', () => {
  let dataDir: string;
  let home: string;
  let mosq: Mosquitto & { operatorPort: number };
  let t: TestServer;
  let env: Record<string, string>;
  const password = 'mosquitto-password-of-alice';

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'drover-mqtt-ext-'));
    home = await mkdtemp(join(tmpdir(), 'drover-mqtt-home-'));
    mosq = await startOperatorMosquitto(dataDir, { 'ops-alice': password, 'ops-bob': password });
    t = await startTestServer({ dataDir, brokerUrl: mosq.url });
    assert.equal((await t.api('POST', '/apis/apps/v1/namespaces/default/deployments', deployment('web'))).status, 201);
    env = { HOME: home, DROVER_MQTT_HOST: '127.0.0.1', DROVER_MQTT_PORT: String(mosq.operatorPort), DROVER_CA: t.caFile, DROVER_MQTT_USER: 'ops-alice', DROVER_MQTT_PASSWORD: password, DROVER_TOKEN: t.token };
  });
  after(async () => {
    await t?.stop();
    await mosq?.stop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  });

  test("the README's lines: an MQTT 5 request with a response topic and a 3.1.1 request naming its reply topic", async () => {
    const { script, exported } = await readmeCommandBlock('external broker');
    assert.deepEqual(exported.filter((v) => !(v in env)), []);
    const r = await runBash(script, { cwd: home, env });
    assert.equal(r.code, 0, r.stderr);
    const got = replies(r.stdout);
    assert.deepEqual(got.map((x) => [x.transaction, x.ok]), [['nodes-1', true], ['scale-web', true]], r.stdout);
    assert.equal(got[0]!.data.kind, 'NodeList');
    assert.equal((await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body.spec.replicas, 2);
    // MQTT 5: the correlation data comes back with the reply.
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${mosq.operatorPort}`, { clientId: 'ops-alice-5', username: 'ops-alice', password, ca: t.ca, protocolVersion: 5, reconnectPeriod: 0 });
    try {
      const topic = `${topics.commandResponse('get', 'ops-alice')}/rr`;
      await c.subscribeAsync(topic, { qos: 1 });
      const reply = new Promise<{ body: any; correlation?: Buffer }>((resolve) => c.on('message', (_t, p, packet) => resolve({ body: JSON.parse(p.toString()), correlation: packet.properties?.correlationData })));
      await c.publishAsync(topics.command('get'), JSON.stringify({ transaction: 'v5', token: t.token, kind: 'nodes' }), { qos: 1, properties: { responseTopic: topic, correlationData: Buffer.from('corr-17') } });
      const got = await reply;
      assert.deepEqual([got.body.transaction, got.body.ok, got.correlation?.toString()], ['v5', true, 'corr-17']);
    } finally {
      await c.endAsync(true);
    }
  });

  test('through Mosquitto too: malformed JSON, unknown verb, missing field, a view token writing, no token: error replies; nothing stored changes', async () => {
    const view = await viewToken(t);
    const before = await storeState(t);
    // MQTT 5 requests with a response topic (a request that is not JSON can name its reply topic no other way).
    const pub = (verb: string, body: string) => `mosquitto_pub -V mqttv5 -i ops-bob -t drover/v1/cmd/${verb} -D publish response-topic drover/v1/cmd/${verb}/response/ops-bob -s <<EOF\n${body}\nEOF\n`;
    const sub = 'mosquitto_sub -i ops-bob-replies -c -t "drover/v1/cmd/+/response/ops-bob"';
    const script = [
      `mkdir -p ~/.config && printf -- '-h %s\\n-p %s\\n--cafile %s\\n-u ops-bob\\n-P %s\\n-q 1\\n' "$DROVER_MQTT_HOST" "$DROVER_MQTT_PORT" "$DROVER_CA" "$DROVER_MQTT_PASSWORD" | tee ~/.config/mosquitto_pub > ~/.config/mosquitto_sub\n`,
      `${sub} -E\n`,
      pub('apply', '{"transaction": "t1", "token": "$VIEW", "manifest": '),
      pub('explode', '{"transaction":"t2","token":"$VIEW","kind":"nodes"}'),
      pub('delete', '{"transaction":"t3","token":"$VIEW","kind":"deployment"}'),
      pub('scale', '{"transaction":"t4","token":"$VIEW","kind":"deployment","name":"web","replicas":7}'),
      pub('delete', '{"transaction":"t5","kind":"deployment","name":"web"}'),
      pub('get', '{"transaction":"t6","token":"abcdef.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","kind":"nodes"}'),
      // Retained, with an admin token: refused (and the broker's copy cleared), not run.
      pub('delete', '{"transaction":"t7","token":"$DROVER_TOKEN","kind":"deployment","name":"web"}').replace('mosquitto_pub ', 'mosquitto_pub -r '),
      `${sub} -C 7 -W 30\n`,
    ].join('');
    const r = await runBash(script, { cwd: home, env: { ...env, VIEW: view } });
    assert.equal(r.code, 0, r.stderr);
    const got = replies(r.stdout);
    assert.equal(got.length, 7, r.stdout);
    const e = got.map((x) => [x.transaction, x.error?.code, x.error?.field]);
    assert.deepEqual(e, [[null, 400, undefined], ['t2', 404, undefined], ['t3', 422, 'name'], ['t4', 403, undefined], ['t5', 401, 'token'], ['t6', 401, 'token'], ['t7', 400, 'retain']], r.stdout);
    assert.match(got[0]!.error!.message, /not valid JSON/);
    assert.match(got[3]!.error!.message, /role view\) may not update deployments "web"/);
    assert.match(got[5]!.error!.message, /a valid bearer token is required/);
    assert.equal(await storeState(t), before, 'nothing stored changed');
  });
});

describe('MQTT commands on a plain listener (--insecure)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ insecure: true });
  });
  after(async () => {
    await t?.stop();
  });

  test('an operator with its token runs commands; the admin token does not make anyone drover-server or an agent', async () => {
    for (const clientId of ['drover-server', 'drover-agent-edge-1']) {
      assert.equal(await connectRefusal(t.mqttUrl, { clientId, username: clientId.replace('drover-agent-', ''), password: t.token }), '4', clientId);
    }
    const c = await mqtt.connectAsync(t.mqttUrl, { clientId: 'ops-plain', username: 'x', password: t.token, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const r = await ask(c, 'get', { transaction: 'plain', kind: 'namespaces' });
      assert.deepEqual([r.ok, r.data.items.map((n: any) => n.metadata.name)], [true, ['default']]);
    } finally {
      await c.endAsync(true);
    }
    assert.equal((await fetch(`${t.apiUrl}/readyz`)).status, 200);
  });
});
