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
  /**
   * Several servers on one broker (MQTT 5): the agent reports every server hears (a plain subscription:
   * each gets its own copy, retained ones at subscribe) to keep what it holds in memory — when a node
   * was last heard, whether it said goodbye, which encodings it reads. Statuses are small between
   * changes (a heartbeat carries no pod reports), and hearing them costs no store write; so the leader
   * knows a node alive whichever server handled its report, and a server that becomes leader already
   * knows every node's last heard time (no grace period to assume, no node turning Unknown on a failover).
   */
  agentReportsEveryServer: () => [`${PREFIX}/nodes/+/presence`, `${PREFIX}/nodes/+/hello`, `${PREFIX}/nodes/+/status`],
  /** Responses to requests the server sent to any node. */
  allResponses: () => `${PREFIX}/nodes/+/res/+`,
  /**
   * Several servers on one broker: a server's goodbye (its last will, or said at a clean stop), never
   * retained. The others learn that reports handed to it may have died with it (server/nodes/registry.ts reapplyHeard).
   */
  serverGone: (serverId: string) => `${PREFIX}/servers/${serverId}/gone`,
  allServersGone: () => `${PREFIX}/servers/+/gone`,
  /** What one agent subscribes to. */
  agentInbox: (node: string) => [`${PREFIX}/nodes/${node}/desired`, `${PREFIX}/nodes/${node}/req/+`],
};

/** `drover/v1/servers/{id}/gone` → the server id, else undefined. */
export function parseServerGoneTopic(topic: string): string | undefined {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== PREFIX || parts[2] !== 'servers' || parts[4] !== 'gone' || !isServerId(parts[3]!)) return undefined;
  return parts[3];
}

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

/**
 * The server's own MQTT client id (and the CN of its client certificate, so the username an external
 * broker knows every server by: `drover broker acl` grants it, whatever each server's client id).
 */
export const SERVER_CLIENT_ID = 'drover-server';
const SERVER_CLIENT_PREFIX = `${SERVER_CLIENT_ID}-`;
const AGENT_CLIENT_PREFIX = 'drover-agent-';

export function agentClientId(node: string): string {
  return `${AGENT_CLIENT_PREFIX}${node}`;
}

/** What may follow `drover-server-` in a server's client id: one topic level, and short (client ids of 23 characters are all MQTT 3.1.1 promises; MQTT 5 brokers take more). */
const SERVER_ID = /^[A-Za-z0-9_.-]{1,48}$/;

export function isServerId(id: string): boolean {
  return SERVER_ID.test(id);
}

/**
 * The client id of one of several servers sharing an external broker: `drover-server-{id}`. Two sessions
 * with one client id take each other's place on a broker (a session takeover every reconnect), so each
 * server has its own; without an id (one server), the id of old, `drover-server`.
 */
export function serverClientId(serverId?: string): string {
  if (serverId === undefined) return SERVER_CLIENT_ID;
  if (!isServerId(serverId)) throw new ValidationError([{ field: 'server-id', message: `"${serverId}": 1-48 of A-Za-z0-9_.- (it becomes the MQTT client id drover-server-ID)` }], 'invalid server id');
  return `${SERVER_CLIENT_PREFIX}${serverId}`;
}

/** Client ids only drover's own sessions may use: the servers' (`drover-server`, `drover-server-*`), and `drover-agent-*`. */
export function isReservedClientId(clientId: string): boolean {
  return clientId === SERVER_CLIENT_ID || clientId.startsWith(SERVER_CLIENT_PREFIX) || clientId.startsWith(AGENT_CLIENT_PREFIX);
}

/**
 * The MQTT 5 shared subscription group of drover's servers: a message on `$share/drover/{filter}` goes to
 * one server of the group, so an agent's report is handled once.
 */
export const SERVER_SHARE_GROUP = 'drover';

export function sharedFilter(filter: string): string {
  return `$share/${SERVER_SHARE_GROUP}/${filter}`;
}

const OPERATOR_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * A client id an operator (a person or script with an API token) may connect under: one topic level of
 * letters, digits, `_`, `.`, `-` (at most 64), never a reserved one. It names the operator's reply
 * topics, so `+`, `#` or `/` in it would turn them into someone else's.
 */
export function isOperatorClientId(clientId: string): boolean {
  return OPERATOR_ID.test(clientId) && !isReservedClientId(clientId);
}

/**
 * The reply name of a command reply topic or filter: `drover/v1/cmd/{verb|+}/response/{name}` and any
 * levels below it (a script's own sub-topics), else undefined. The name itself must be a literal
 * operator client id: a wildcard there would read every operator's replies.
 */
export function replyNameOf(topicOrFilter: string): string | undefined {
  const parts = topicOrFilter.split('/');
  if (parts.length < 6 || parts.length > 12 || `${parts[0]}/${parts[1]}` !== PREFIX || parts[2] !== 'cmd' || parts[4] !== 'response') return undefined;
  const verb = parts[3]!;
  if (!verb || verb === '#' || (verb.includes('+') && verb !== '+')) return undefined;
  const name = parts[5]!;
  return isOperatorClientId(name) ? name : undefined;
}

/**
 * ACL of an operator on the embedded broker: it may publish commands only (`drover/v1/cmd/{verb}`, one
 * level, any verb: an unknown one gets an error reply).
 */
export function operatorMayPublish(topic: string): boolean {
  return parseCommandTopic(topic) !== undefined && !topic.includes('+') && !topic.includes('#');
}

/**
 * ACL of an operator's subscriptions: the retained fleet summary and node states (exact filters, or
 * `nodes/+/state`), and reply topics whose name `mayUseReplyName` grants (its own client id, or one its
 * token holds). Never the command requests themselves, `#`, `$SYS`, or an agent's topics.
 */
export function operatorMaySubscribe(filter: string, mayUseReplyName: (name: string) => boolean): boolean {
  if (filter === topics.fleetSummary() || filter === topics.allNodeStates()) return true;
  const parts = filter.split('/');
  // One node's state: `drover/v1/nodes/{node}/state` with a literal node name.
  if (parts.length === 5 && `${parts[0]}/${parts[1]}` === PREFIX && parts[2] === 'nodes' && parts[4] === 'state') return isTopicSafe(parts[3]!);
  const name = replyNameOf(filter);
  return name !== undefined && mayUseReplyName(name);
}

export const MAX_REPLY_TOPIC_LENGTH = 256;

/**
 * Where a command's reply may be sent at the requester's wish (`replyTo`, MQTT 5 response topic): a reply
 * topic (no wildcards) the requester may read. The server publishes as a privileged client, so anything
 * else would let an operator make it write into an agent's inbox or over a retained state.
 */
export function isAllowedReplyTopic(topic: string, mayUseReplyName: (name: string) => boolean): boolean {
  if (topic.length > MAX_REPLY_TOPIC_LENGTH || /[+#\u0000]/.test(topic)) return false;
  const name = replyNameOf(topic);
  return name !== undefined && mayUseReplyName(name);
}

/**
 * A Mosquitto ACL file equivalent to the embedded broker's rules, for an external broker with
 * `use_identity_as_username true` (the certificate's CN is the username): the server's client
 * reads and writes every drover topic, each node only its own (Mosquitto substitutes %u and refuses
 * a username holding + or # in a pattern).
 */
/*
 * Several servers: each connects under its own client id (drover-server-ID) but with the same client
 * certificate CN (or username), so the one `user` line grants them all. Mosquitto checks a shared
 * subscription (`$share/drover/drover/v1/...`) against the filter after the group: `drover/v1/#` covers it.
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

/**
 * The Mosquitto ACL of the operators' listener (a `password_file` listener of its own, with
 * `per_listener_settings true`, so no operator name can match a node's `%u` patterns): publish
 * commands, read the replies named after one's own username, the fleet summary and node states.
 * `%u` rather than `%c`: Mosquitto does not tie a client id to a user, a username is proven by its password.
 */
export function mosquittoOperatorAcl(): string {
  return [
    '# drover operators (password_file listener; generated by `drover broker acl --operators`)',
    '# replies go to drover/v1/cmd/VERB/response/USERNAME: send "clientId": "USERNAME" (or a replyTo below it)',
    `pattern write ${topics.allCommands()}`,
    `pattern read ${topics.commandResponse('+', '%u')}`,
    `pattern read ${topics.commandResponse('+', '%u')}/#`,
    `pattern read ${topics.fleetSummary()}`,
    `pattern read ${topics.allNodeStates()}`,
    '',
  ].join('\n');
}
