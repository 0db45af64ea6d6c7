/**
 * THE MQTT topic contract. No other file in the tree spells a topic string: server and agent build
 * and parse topics only through these functions.
 */
import { ValidationError } from '../util/errors.js';

export const CONTRACT_VERSION = 1;
export const PREFIX = 'drover/v1';

export interface TopicSpec {
  qos: 0 | 1;
  retain: boolean;
}

/** QoS and retain per message kind (the architecture's contract table). */
export const DELIVERY = {
  presence: { qos: 1, retain: true },
  hello: { qos: 1, retain: true },
  desired: { qos: 1, retain: true },
  status: { qos: 1, retain: false },
  events: { qos: 1, retain: false },
  request: { qos: 1, retain: false },
  /**
   * `exec` requests: QoS 0, so a broker never queues one for an offline node to run it hours later,
   * after the user was told it failed. At most once, as a command typed at a prompt.
   */
  execRequest: { qos: 0, retain: false },
  response: { qos: 1, retain: false },
  /** An operator's command (`drover/v1/cmd/{verb}`) and its reply: never retained, a command is an act, not a state. */
  command: { qos: 1, retain: false },
  commandReply: { qos: 1, retain: false },
  /** What a dashboard subscribes to: the last value waits for it on the broker. */
  fleetSummary: { qos: 1, retain: true },
  nodeState: { qos: 1, retain: true },
} as const satisfies Record<string, TopicSpec>;

export type NodeTopicKind = 'presence' | 'hello' | 'desired' | 'status' | 'events';

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** A node name that can stand in a topic: a DNS subdomain, so no `+`, `#` or `/`. */
export function isTopicSafe(node: string): boolean {
  return NODE_NAME.test(node);
}

export function assertTopicSafe(node: string): void {
  // '+', '#' and '/' would change the topic's meaning; node names are DNS subdomains anyway.
  if (!NODE_NAME.test(node)) throw new ValidationError([{ field: 'node', message: `"${node}" is not a DNS subdomain: it cannot be part of an MQTT topic` }], 'invalid node name');
}

export const topics = {
  presence: (node: string) => `${PREFIX}/nodes/${node}/presence`,
  hello: (node: string) => `${PREFIX}/nodes/${node}/hello`,
  desired: (node: string) => `${PREFIX}/nodes/${node}/desired`,
  status: (node: string) => `${PREFIX}/nodes/${node}/status`,
  events: (node: string) => `${PREFIX}/nodes/${node}/events`,
  request: (node: string, id: string) => `${PREFIX}/nodes/${node}/req/${id}`,
  response: (node: string, id: string) => `${PREFIX}/nodes/${node}/res/${id}`,
  /** Operators' commands: `verb` is one of COMMAND_VERBS (src/contract/commands.ts), or anything, to be refused with a reply. */
  command: (verb: string) => `${PREFIX}/cmd/${verb}`,
  allCommands: () => `${PREFIX}/cmd/+`,
  /** Where a command's reply goes when the request names no replyTo and no MQTT 5 response topic. */
  commandResponse: (verb: string, clientId: string) => `${PREFIX}/cmd/${verb}/response/${clientId}`,
  /** Retained, published by the server: the fleet in one message (debounced). */
  fleetSummary: () => `${PREFIX}/fleet/summary`,
  /** Retained, published by the server: one node's Ready/NotReady/Unknown and when it was last heard. */
  nodeState: (node: string) => `${PREFIX}/nodes/${node}/state`,
  allNodeStates: () => `${PREFIX}/nodes/+/state`,
  /** Subscriptions the server holds to hear from every agent. */
  allAgentReports: () => [
    `${PREFIX}/nodes/+/presence`,
    `${PREFIX}/nodes/+/hello`,
    `${PREFIX}/nodes/+/status`,
    `${PREFIX}/nodes/+/events`,
  ],
  /** Responses to requests the server sent to any node. */
  allResponses: () => `${PREFIX}/nodes/+/res/+`,
  /** What one agent subscribes to. */
  agentInbox: (node: string) => [`${PREFIX}/nodes/${node}/desired`, `${PREFIX}/nodes/${node}/req/+`],
};

/** `drover/v1/cmd/{verb}` → the verb (any single level; unknown verbs get an error reply), else undefined. */
export function parseCommandTopic(topic: string): { verb: string } | undefined {
  const parts = topic.split('/');
  if (parts.length !== 4 || `${parts[0]}/${parts[1]}` !== PREFIX || parts[2] !== 'cmd' || !parts[3]) return undefined;
  return { verb: parts[3] };
}

export type ParsedTopic =
  | { kind: NodeTopicKind; node: string }
  | { kind: 'request' | 'response'; node: string; id: string };

export function parseTopic(topic: string): ParsedTopic | undefined {
  const parts = topic.split('/');
  if (parts.length < 5 || `${parts[0]}/${parts[1]}` !== PREFIX || parts[2] !== 'nodes') return undefined;
  const node = parts[3]!;
  if (parts.length === 5) {
    const k = parts[4] as NodeTopicKind;
    if (['presence', 'hello', 'desired', 'status', 'events'].includes(k)) return { kind: k, node };
    return undefined;
  }
  if (parts.length === 6 && (parts[4] === 'req' || parts[4] === 'res')) {
    return { kind: parts[4] === 'req' ? 'request' : 'response', node, id: parts[5]! };
  }
  return undefined;
}

/** ACL of an agent: it may publish only its own reports and responses. */
export function agentMayPublish(node: string, topic: string): boolean {
  const t = parseTopic(topic);
  return !!t && t.node === node && ['hello', 'presence', 'status', 'events', 'response'].includes(t.kind);
}

/** An agent may retain only the messages the contract retains (DELIVERY: hello, presence). */
export function agentMayRetain(topic: string): boolean {
  const t = parseTopic(topic);
  return !!t && (t.kind === 'hello' || t.kind === 'presence');
}

/** ACL of an agent: it may subscribe only to its own inbox (exact filters, no wildcards beyond req/+). */
export function agentMaySubscribe(node: string, filter: string): boolean {
  return topics.agentInbox(node).includes(filter);
}

export function agentClientId(node: string): string {
  return `drover-agent-${node}`;
}

/**
 * A Mosquitto ACL file equivalent to the embedded broker's rules, for an external broker with
 * `use_identity_as_username true` (the certificate's CN is the username): the server's client
 * reads and writes every drover topic, each node only its own (Mosquitto substitutes %u and refuses
 * a username holding + or # in a pattern).
 */
export function mosquittoAcl(serverUser: string): string {
  const u = '%u';
  const writes = [topics.presence(u), topics.hello(u), topics.status(u), topics.events(u), topics.response(u, '+')];
  const reads = topics.agentInbox(u);
  return [
    '# drover ACL for Mosquitto (generated by `drover broker acl`)',
    `user ${serverUser}`,
    `topic readwrite ${PREFIX}/#`,
    '',
    '# every node: only its own topics',
    ...writes.map((t) => `pattern write ${t}`),
    ...reads.map((t) => `pattern read ${t}`),
    '',
  ].join('\n');
}
