/**
 * The MQTT command contract and the operators' ACL, tried as an attacker would: wildcards, `#`, `$SYS`,
 * another client's replies, an agent's inbox, a replyTo into a node's desired state; and requests that
 * are not JSON, not objects, of no known verb, or missing a field: each refused with a cause that names it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMAND_VERBS, MAX_COMMAND_BYTES, MAX_MANIFEST_DOCUMENTS, commandReply, parseCommand } from '../../src/contract/commands.js';
import {
  isAllowedReplyTopic,
  isOperatorClientId,
  isReservedClientId,
  mosquittoOperatorAcl,
  operatorMayPublish,
  operatorMaySubscribe,
  replyNameOf,
  topics,
} from '../../src/contract/topics.js';

const own = (name: string) => name === 'alice';

test('operator client ids: one safe topic level, never drover-server or drover-agent-*', () => {
  for (const id of ['alice', 'node-red_1', 'ops.bob', 'A'.repeat(64)]) assert.equal(isOperatorClientId(id), true, id);
  for (const id of ['drover-server', 'drover-agent-edge-1', 'drover-agent-', '', 'a/b', 'a+', '#', 'x y', 'A'.repeat(65), 'é']) assert.equal(isOperatorClientId(id), false, id);
  assert.equal(isReservedClientId('drover-agent-x'), true);
  assert.equal(isReservedClientId('drover-serverx'), false);
});

test('an operator publishes only command requests, one verb level, no wildcards', () => {
  assert.equal(operatorMayPublish(topics.command('get')), true);
  assert.equal(operatorMayPublish(topics.command('no-such-verb')), true, 'an unknown verb gets an error reply, so it may be sent');
  for (const t of [topics.desired('edge-1'), topics.status('edge-1'), topics.fleetSummary(), topics.nodeState('edge-1'), topics.commandResponse('get', 'bob'), 'drover/v1/cmd/get/x', 'drover/v1/cmd', '$SYS/broker/x', 'other/topic']) {
    assert.equal(operatorMayPublish(t), false, t);
  }
});

test('an operator subscribes to the fleet summary, node states and its own replies only', () => {
  for (const f of [topics.fleetSummary(), topics.allNodeStates(), topics.nodeState('edge-1'), topics.commandResponse('get', 'alice'), topics.commandResponse('+', 'alice'), `${topics.commandResponse('+', 'alice')}/#`, `${topics.commandResponse('apply', 'alice')}/flow/+`]) {
    assert.equal(operatorMaySubscribe(f, own), true, f);
  }
  const refused = [
    '#', '+', '$SYS/#', '$SYS/broker/clients/connected', '$share/g/drover/v1/fleet/summary',
    'drover/#', 'drover/v1/#', 'drover/v1/+/summary', 'drover/v1/fleet/#', 'drover/v1/fleet/+',
    // the requests themselves (other operators' commands, tokens included over an external broker)
    topics.allCommands(), topics.command('apply'), 'drover/v1/cmd/#', 'drover/v1/cmd/+/#',
    // someone else's replies, by name or by wildcard
    topics.commandResponse('get', 'bob'), topics.commandResponse('+', '+'), 'drover/v1/cmd/+/response/#', 'drover/v1/cmd/#/response/alice', 'drover/v1/cmd/+/+/alice',
    // agents' topics
    topics.desired('edge-1'), 'drover/v1/nodes/+/desired', 'drover/v1/nodes/edge-1/req/+', 'drover/v1/nodes/+/+', 'drover/v1/nodes/#', topics.hello('edge-1'), 'drover/v1/nodes/+/state/#', 'drover/v1/nodes/a+b/state',
  ];
  for (const f of refused) assert.equal(operatorMaySubscribe(f, own), false, f);
});

test('replyTo: only a reply topic of the requester, never a node topic, a wildcard or a retained state', () => {
  assert.equal(isAllowedReplyTopic(topics.commandResponse('get', 'alice'), own), true);
  assert.equal(isAllowedReplyTopic(`${topics.commandResponse('get', 'alice')}/flow-7`, own), true);
  for (const t of [
    topics.desired('edge-1'), 'drover/v1/nodes/edge-1/desired', topics.nodeState('edge-1'), topics.fleetSummary(), topics.request('edge-1', 'x'), topics.command('delete'),
    topics.commandResponse('get', 'bob'), 'drover/v1/cmd/get/response/+', 'drover/v1/cmd/get/response/alice/#', 'drover/v1/cmd/+/response/alice', '$SYS/x', 'x'.repeat(300), 'drover/v1/cmd/get/response/alice/\u0000',
  ]) {
    assert.equal(isAllowedReplyTopic(t, own), false, t);
  }
  assert.equal(replyNameOf('drover/v1/cmd/get/response/alice/a/b'), 'alice');
  assert.equal(replyNameOf('drover/v1/nodes/alice/desired'), undefined);
});

test('the Mosquitto operator ACL: write commands, read replies under one\'s own username, the fleet view; nothing of nodes', () => {
  const acl = mosquittoOperatorAcl();
  const lines = acl.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(lines, [
    'pattern write drover/v1/cmd/+',
    'pattern read drover/v1/cmd/+/response/%u',
    'pattern read drover/v1/cmd/+/response/%u/#',
    'pattern read drover/v1/fleet/summary',
    'pattern read drover/v1/nodes/+/state',
  ]);
});

test('requests: each refusal names its cause, keeps the transaction when it can, and uses the HTTP codes', () => {
  const refusal = (verb: string, payload: string | Buffer) => {
    const r = parseCommand(verb, payload);
    assert.equal(r.ok, false, `${verb} ${String(payload).slice(0, 80)}`);
    return (r as Extract<typeof r, { ok: false }>).refused;
  };
  let r = refusal('get', '{"transaction": "t1", kind: nodes}');
  assert.equal(r.transaction, null);
  assert.equal(r.error.code, 400);
  assert.match(r.error.message, /not valid JSON/);
  r = refusal('get', '["transaction"]');
  assert.match(r.error.message, /must be a JSON object, not an array/);
  r = refusal('get', 'null');
  assert.match(r.error.message, /not null/);
  r = refusal('frobnicate', '{"transaction":"t2"}');
  assert.equal(r.transaction, 't2');
  assert.equal(r.error.code, 404);
  assert.match(r.error.message, /unknown command "frobnicate".*get, list, apply/);
  r = refusal('scale', '{"transaction":"t3","kind":"deployment","name":"web"}');
  assert.deepEqual([r.transaction, r.error.code, r.error.field], ['t3', 422, 'replicas']);
  assert.match(r.error.message, /replicas: required/);
  r = refusal('scale', '{"transaction":"t4","kind":"deployment","name":"web","replicas":"3"}');
  assert.equal(r.error.field, 'replicas');
  r = refusal('scale', '{"transaction":"t4","kind":"deployment","name":"web","replicas":-1}');
  assert.match(r.error.message, /replicas: must not be negative/);
  r = refusal('get', '{"transaction":"t5","kind":"pods","nmae":"web"}');
  assert.deepEqual([r.error.field, r.error.code], ['nmae', 422]);
  r = refusal('get', '{"kind":"pods"}');
  assert.deepEqual([r.transaction, r.error.field], [null, 'transaction']);
  r = refusal('get', JSON.stringify({ transaction: 'x'.repeat(129), kind: 'pods' }));
  assert.deepEqual([r.transaction, r.error.field], [null, 'transaction']);
  r = refusal('logs', '{"transaction":"t6","pod":"web","tailLines":100000}');
  assert.match(r.error.message, /tailLines: at most 1000/);
  r = refusal('apply', Buffer.alloc(MAX_COMMAND_BYTES + 1, 0x20));
  assert.equal(r.error.code, 413);
  r = refusal('get', '{"transaction":"t7","kind":"pods","replyTo":"drover/v1/cmd/get/response/alice"');
  assert.equal(r.error.code, 400);
});

test('a valid request: verb, transaction, routing fields apart from the arguments', () => {
  const r = parseCommand('scale', JSON.stringify({ transaction: 't', replyTo: 'drover/v1/cmd/scale/response/alice', token: 'abcdef.x', kind: 'deploy', name: 'web', replicas: 3 }));
  assert.ok(r.ok);
  assert.deepEqual(r.command, { verb: 'scale', transaction: 't', replyTo: 'drover/v1/cmd/scale/response/alice', token: 'abcdef.x', args: { kind: 'deploy', name: 'web', replicas: 3 } });
  const y = parseCommand('apply', JSON.stringify({ transaction: 'a', manifest: 'kind: Pod\n' }));
  assert.ok(y.ok);
  const w = parseCommand('rollout-undo', JSON.stringify({ transaction: 'u', name: 'web' }));
  assert.ok(w.ok);
  assert.equal(w.command.args.kind, 'deployment', 'rollout verbs default to deployments');
  assert.equal(COMMAND_VERBS.length, new Set(COMMAND_VERBS).size);
});

test('apply: a list of objects holds at most MAX_MANIFEST_DOCUMENTS, refused naming manifest', () => {
  const cm = (i: number) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}` } });
  assert.ok(parseCommand('apply', JSON.stringify({ transaction: 'a', manifest: Array.from({ length: MAX_MANIFEST_DOCUMENTS }, (_, i) => cm(i)) })).ok);
  const r = parseCommand('apply', JSON.stringify({ transaction: 'a', manifest: Array.from({ length: MAX_MANIFEST_DOCUMENTS + 1 }, (_, i) => cm(i)) }));
  assert.ok(!r.ok);
  assert.deepEqual([r.refused.error.code, r.refused.error.field], [422, 'manifest']);
});

test('reply shapes', () => {
  assert.ok(commandReply.safeParse({ transaction: 't', ok: true, data: { items: [] } }).success);
  assert.ok(commandReply.safeParse({ transaction: null, ok: false, error: { code: 400, reason: 'BadRequest', message: 'x' } }).success);
  assert.ok(!commandReply.safeParse({ transaction: 't', ok: false, data: 1 }).success);
});
