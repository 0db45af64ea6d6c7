import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type PeerCertificate, type Server as TlsServer } from 'node:tls';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { agentMayPublish, agentMayRetain, agentMaySubscribe, isOperatorClientId, isReservedClientId, isTopicSafe, operatorMayPublish, operatorMaySubscribe, parseCommandTopic } from '../../src/contract/topics.js';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import { indexRetained } from './retained-index.js';
import { keepSessionOrder, type SessionClient, type SessionOrder } from './session-order.js';
import type { Logger } from '../../src/util/logger.js';

/**
 * A person or script connected with an API token (its MQTT password), under a client id of its own.
 * `token` is kept to run its commands through the HTTP API's own checks; it is never logged.
 */
export interface OperatorSession {
  clientId: string;
  tokenId: string;
  /** The API role of the token (server/auth/roles.ts decides what it may do, as over HTTP). */
  apiRole: 'admin' | 'view';
  token: string;
  remote?: string;
}

/** Who a connected client is: the server itself, the agent of one node, or an operator. */
export type Principal = { role: 'server' } | { role: 'agent'; node: string } | { role: 'operator'; operator: OperatorSession };

/** How the broker checks an operator's API token (TokenStore.checkApi). */
export type ApiTokenCheck = (token: string) => { identity: { tokenId: string; role: 'admin' | 'view' } } | { refused: string; tokenId?: string };

/** An operator's command as the broker received it, with the identity the connection proved. */
export interface BrokerCommand {
  verb: string;
  payload: Buffer;
  /** It was published with the retain flag (nothing was stored: a command is refused when retained). */
  retain: boolean;
  operator: OperatorSession & {
    /** Whether this operator may read replies named `name` (its client id, or one its token holds). */
    mayUseReplyName(name: string): boolean;
  };
}

/** The verified client certificate of a TLS connection (absent on a plain listener). */
export interface PeerIdentity {
  cn: string;
  o?: string;
  /** Upper-case hex as node:tls reports it. */
  serial: string;
}

export interface ConnectAttempt {
  clientId: string;
  username?: string;
  password?: string;
  peer?: PeerIdentity;
}

/**
 * A refusal: `bad-credentials` (CONNACK 4) for who-are-you failures, `not-authorized` (CONNACK 5)
 * for a known node that may not connect now (pending approval, revoked). `why` goes to the log only.
 */
export type ConnectDecision = { principal: Principal } | { refuse: 'bad-credentials' | 'not-authorized'; why: string };

export interface EmbeddedBrokerOptions {
  /** MQTT over TLS; clients must present a certificate signed by `ca` (the handshake fails otherwise). */
  tls?: {
    host: string;
    port: number;
    key: string;
    cert: string;
    ca: string;
    /**
     * Seals TLS session tickets (48 bytes; server/pki/session-tickets.ts): the same key after a restart lets the
     * fleet resume its sessions. Absent: node:tls makes one per process.
     */
    ticketKeys?: Buffer;
    /** How long a ticket may be used to resume (node:tls's default is 300 s). */
    sessionTimeoutSeconds?: number;
  };
  /** Plain MQTT (`--insecure` only). */
  plain?: { host: string; port: number };
  /** Decides whether a client may connect and as whom (deny by default); operators are decided by `operators`. */
  authenticate: (attempt: ConnectAttempt) => ConnectDecision;
  /** Lets operators in with an API token as password (absent: no operators). */
  operators?: { checkToken: ApiTokenCheck };
  /** Limits on hostile input (server/mqtt/limits.ts): admit at TCP accept, then a bounded view of the stream for aedes. */
  guard?: ConnectionGuard;
  logger: Logger;
}

export interface ConnectionGuard {
  admit(socket: Socket): boolean;
  handle(socket: Duplex, next: (conn: Duplex) => void): void;
}

/** The kinds of client the broker tells apart (Principal's roles). */
export type ClientRole = Principal['role'];

/**
 * What went through the broker since it started, for /metrics (server/metrics/server-metrics.ts reads it
 * when scraped). PUBLISH messages in (from a client) and out (to a subscriber) with their topic and payload
 * bytes, per role of that client; wire bytes are the TCP bytes of every connection, TLS and MQTT framing,
 * pings and acknowledgements included (what a metered link pays for).
 */
export interface BrokerTraffic {
  messages: Record<'in' | 'out', Record<ClientRole, number>>;
  publishBytes: Record<'in' | 'out', Record<ClientRole, number>>;
  wireBytes: { in: number; out: number };
  /** TLS handshakes completed: full, or resumed from a session ticket (cheaper: no signature, no chain to verify). */
  tlsHandshakes: { full: number; resumed: number };
  connected: Record<ClientRole, number>;
}

export interface EmbeddedBroker {
  /** Where the server's own client reaches the broker (TLS when there is a TLS listener). */
  url: string;
  tlsPort?: number;
  plainPort?: number;
  connectedClients(): number;
  /** Cuts a client's session at once (a revoked node). True if it was connected. */
  disconnect(clientId: string): boolean;
  /** Where operators' commands go; until it is set they are refused (logged). */
  onCommand(handler: (c: BrokerCommand) => void): void;
  /**
   * Told the node of an agent whose connection pinged (MQTT PINGREQ): the keepalive carries liveness
   * between heartbeats, so the last heard time stays fresh without a report (NodeLiveness.touch).
   */
  onAgentPing(handler: (node: string) => void): void;
  /** Counters since start and who is connected now (a copy; counting costs a few additions per message). */
  traffic(): BrokerTraffic;
  /** A new TLS session ticket key (renewed while running): tickets sealed with the old one get a full handshake. */
  setTicketKeys(key: Buffer): void;
  close(): Promise<void>;
}

const perRole = (): Record<ClientRole, number> => ({ server: 0, agent: 0, operator: 0 });

/** Plain numbers, added to per message: /metrics reads them only when scraped. */
class TrafficCounters {
  readonly messages = { in: perRole(), out: perRole() };
  readonly publishBytes = { in: perRole(), out: perRole() };
  readonly tlsHandshakes = { full: 0, resumed: 0 };
  /** Bytes of connections already closed; open ones are read from their sockets. */
  private closedIn = 0;
  private closedOut = 0;
  private readonly open = new Set<Socket>();

  publish(direction: 'in' | 'out', role: ClientRole | undefined, packet: { topic: string; payload: Buffer | string }): void {
    if (!role) return;
    this.messages[direction][role]++;
    const p = packet.payload;
    this.publishBytes[direction][role] += packet.topic.length + (typeof p === 'string' ? Buffer.byteLength(p) : p.length);
  }

  /** A TCP connection the broker accepted (before TLS: its bytes are the wire's). */
  socket(s: Socket): void {
    this.open.add(s);
    s.once('close', () => {
      this.open.delete(s);
      this.closedIn += s.bytesRead;
      this.closedOut += s.bytesWritten;
    });
  }

  wire(): { in: number; out: number } {
    let i = this.closedIn;
    let o = this.closedOut;
    for (const s of this.open) {
      i += s.bytesRead;
      o += s.bytesWritten;
    }
    return { in: i, out: o };
  }
}

/** Who a verified client certificate names, or undefined (a subject drover cannot read as one name). */
function identityOf(cert: PeerCertificate): PeerIdentity | undefined {
  const cn: unknown = cert?.subject?.CN;
  const o: unknown = cert?.subject?.O;
  // node gives an array for a repeated attribute: two CNs are two identities, which is none.
  if (typeof cn !== 'string' || (o !== undefined && typeof o !== 'string') || !cert.serialNumber) return undefined;
  return { cn, o: o as string | undefined, serial: cert.serialNumber.toUpperCase().replace(/^0+/, '') };
}

/** The client's certificate (from a resumed session's ticket) is no longer valid now. */
function certificateExpired(cert: PeerCertificate): boolean {
  if (!cert?.valid_to) return false;
  const t = Date.now();
  return Date.parse(cert.valid_to) < t || Date.parse(cert.valid_from) > t;
}

/** A client sent a certificate (verified or not); node:tls gives an empty object when it sent none. */
function presentedCertificate(cert: PeerCertificate): boolean {
  return !!cert && Object.keys(cert).length > 0;
}

/**
 * Reply names (operator client ids) one token may hold, and all tokens together. A claim is never taken
 * from its token to make room: evicting the oldest let a `view` token push an admin's name out with
 * 10,001 SUBSCRIBEs and then read the admin's replies.
 */
export const MAX_REPLY_NAMES_PER_TOKEN = 64;
const MAX_REPLY_NAMES = 10_000;

/**
 * Which API token holds which reply name (an operator client id): the first token that connects under it,
 * subscribes to its replies or sends them there holds it for the broker's life, so another token can
 * neither take that client id nor read those replies. A person's several sessions (one publishing, one
 * reading the replies) share their token's names.
 */
class ReplyNames {
  private readonly owners = new Map<string, string>();
  private readonly perToken = new Map<string, number>();

  claim(name: string, tokenId: string): boolean {
    const owner = this.owners.get(name);
    if (owner !== undefined) return owner === tokenId;
    const held = this.perToken.get(tokenId) ?? 0;
    if (held >= MAX_REPLY_NAMES_PER_TOKEN || this.owners.size >= MAX_REPLY_NAMES) return false;
    this.owners.set(name, tokenId);
    this.perToken.set(tokenId, held + 1);
    return true;
  }
}

/**
 * Subscriptions one operator connection may hold (summary, node states, its replies need a handful):
 * aedes 1.2 stores a persistent session's filters in time quadratic in a SUBSCRIBE's size, and one packet
 * of 5,000 allowed filters froze the server for 30 s.
 */
export const MAX_OPERATOR_SUBSCRIPTIONS = 32;
/** Persistent (clean session off) operator sessions one token may create: each keeps its QoS 1 replies while away. */
export const MAX_PERSISTENT_SESSIONS_PER_TOKEN = 8;
/** How often open operator sessions are checked against their token (revoked, expired). */
const OPERATOR_RECHECK_MS = 5_000;
/** Refused filters logged per connection; the rest are counted (a client can send thousands per packet). */
const DENIALS_LOGGED = 5;

/** A client id or username fit for a log line: never a token pasted there (`id.secret`, or anything long). */
function loggable(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (v.length > 64 || /^[a-z0-9]{6}\./.test(v) || /^[A-Za-z0-9_-]{32,}$/.test(v)) return '<redacted>';
  return v;
}

/**
 * Connections the kernel queues for accept(). Node's default, 511, is less than a fleet reconnecting at once
 * after a restart: connections past it are dropped and the devices' TCP retries them 1, 3 and 7 s later
 * (measured at 2,000 agents: a tail of CONNACKs 8-9 s after the attempt began). The kernel caps it at
 * net.core.somaxconn (4,096 on current kernels).
 */
const LISTEN_BACKLOG = 8192;

async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : port;
}

/** Longest a client may take to complete the TLS handshake, and then CONNECT. */
const CONNECT_TIMEOUT_MS = 10_000;

const localHost = (host: string) => (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);

/**
 * An aedes broker on a TLS port (the default) and/or a plain one (`--insecure`): the zero-dependency
 * mode of a drover server. Identity comes from the verified client certificate on TLS.
 */
export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  if (!opts.tls && !opts.plain) throw new Error('startEmbeddedBroker: no listener configured');
  // Keyed by connection, not client id: a reconnect with the same id must not inherit or lose rights.
  const principals = new WeakMap<object, Principal>();
  // The stream aedes reads may be the guard's view of the TLS socket: its certificate is looked up here.
  const peers = new WeakMap<object, PeerIdentity>();
  const overTls = new WeakSet<object>();
  const remotes = new WeakMap<object, string>();
  let commandHandler: ((c: BrokerCommand) => void) | undefined;
  let pingHandler: ((node: string) => void) | undefined;
  const replyNames = new ReplyNames();
  const counters = new TrafficCounters();
  const granted = new WeakMap<object, number>();
  const denied = new WeakMap<object, number>();
  /** Per token, the client ids it made persistent sessions under (aedes keeps them, and their replies, while away). */
  const persistentSessions = new Map<string, Set<string>>();
  /**
   * drover's own client ids (`drover-server`, `drover-agent-*`) are decided by `opts.authenticate`, and
   * over TLS only with a certificate; any other id is an operator's, with an API token as its password.
   * So an operator can never take (and kick) the server's or an agent's session.
   */
  const decideConnect = (a: ConnectAttempt, conn: { overTls: boolean; remote?: string; persistent: boolean }): ConnectDecision => {
    if (isReservedClientId(a.clientId) || a.peer) {
      if (conn.overTls && !a.peer) return { refuse: 'bad-credentials', why: 'a drover client id without a client certificate' };
      return opts.authenticate(a);
    }
    if (!opts.operators) return { refuse: 'bad-credentials', why: 'no operators on this broker' };
    if (!isOperatorClientId(a.clientId)) return { refuse: 'bad-credentials', why: 'operator client id is not 1-64 of [A-Za-z0-9_.-]' };
    if (!a.password) return { refuse: 'bad-credentials', why: 'no API token as password' };
    const check = opts.operators.checkToken(a.password);
    if ('refused' in check) return { refuse: 'bad-credentials', why: `API token ${check.tokenId ? `${check.tokenId} ` : ''}refused: ${check.refused}` };
    const { tokenId, role } = check.identity;
    // A client id names its reply topics: another token may not take it over (and read its replies).
    if (!replyNames.claim(a.clientId, tokenId)) return { refuse: 'not-authorized', why: `client id ${a.clientId} belongs to another token's session, or token ${tokenId} holds ${MAX_REPLY_NAMES_PER_TOKEN} client ids already` };
    if (conn.persistent) {
      const held = persistentSessions.get(tokenId) ?? new Set<string>();
      if (!held.has(a.clientId) && held.size >= MAX_PERSISTENT_SESSIONS_PER_TOKEN) return { refuse: 'not-authorized', why: `token ${tokenId} holds ${MAX_PERSISTENT_SESSIONS_PER_TOKEN} persistent sessions already (connect with a clean session)` };
      held.add(a.clientId);
      persistentSessions.set(tokenId, held);
    }
    return { principal: { role: 'operator', operator: { clientId: a.clientId, tokenId, apiRole: role, token: a.password, ...(conn.remote ? { remote: conn.remote } : {}) } } };
  };
  const authenticate: AedesOptions['authenticate'] = (client, username, password, done) => {
    const attempt: ConnectAttempt = { clientId: client.id, username, password: password?.toString('utf8'), peer: peers.get(client.conn) };
    const decision = decideConnect(attempt, { overTls: overTls.has(client.conn), remote: remotes.get(client.conn), persistent: (client as { clean?: boolean }).clean === false });
    // A node name becomes part of topic filters in the ACL: `+`, `#` or `/` in it (username `+`) would
    // turn the agent's own-inbox rule into a wildcard over every node.
    if ('principal' in decision && (decision.principal.role !== 'agent' || isTopicSafe(decision.principal.node))) {
      principals.set(client, decision.principal);
      if (decision.principal.role === 'operator') {
        const o = decision.principal.operator;
        opts.logger.info({ clientId: o.clientId, tokenId: o.tokenId, role: o.apiRole, remote: o.remote }, 'mqtt operator connected');
      }
      return done(null, true);
    }
    const why = 'refuse' in decision ? decision.why : 'node name not topic-safe';
    // Names only: no password (an API token), no certificate body.
    opts.logger.warn({ clientId: loggable(client.id), username: loggable(username), cn: attempt.peer?.cn, why }, 'mqtt connection refused');
    const notAuthorized = 'refuse' in decision && decision.refuse === 'not-authorized';
    const err = new Error(notAuthorized ? 'not authorized' : 'bad username or password') as AuthenticateError;
    err.returnCode = notAuthorized ? 5 : 4;
    done(err, false);
  };
  // Per-node ACL: an agent publishes only its own reports and subscribes only to its own inbox, so
  // one device cannot impersonate or eavesdrop on another node.
  const authorizePublish: AedesOptions['authorizePublish'] = (client, packet, done) => {
    if (!client) return done(null);
    if (packet.payload && packet.payload.length > MAX_PAYLOAD_BYTES) return done(new Error(`payload larger than ${MAX_PAYLOAD_BYTES} bytes`));
    const who = principals.get(client);
    if (who?.role === 'server') return done(null);
    if (who?.role === 'operator' && operatorMayPublish(packet.topic)) {
      const verb = parseCommandTopic(packet.topic)!.verb;
      const retain = packet.retain;
      // Never stored: a retained command would run again for whoever subscribes. The door answers with an error.
      packet.retain = false;
      const o = who.operator;
      if (!commandHandler) opts.logger.warn({ clientId: o.clientId, verb }, 'mqtt command before the command door was ready: dropped');
      else commandHandler({ verb, payload: Buffer.from(packet.payload), retain, operator: { ...o, mayUseReplyName: (name) => name === o.clientId || replyNames.claim(name, o.tokenId) } });
      return done(null);
    }
    if (who?.role === 'agent' && agentMayPublish(who.node, packet.topic)) {
      // The broker keeps a retained message for good: an agent may retain only what the contract retains
      // (hello, presence), or it could park megabytes on any of its topics (res/<id> ids are unbounded).
      if (packet.retain && !agentMayRetain(packet.topic)) {
        opts.logger.warn({ clientId: client.id, topic: packet.topic }, 'mqtt retained publish denied');
        return done(new Error(`not allowed to retain on ${packet.topic}`));
      }
      return done(null);
    }
    opts.logger.warn({ clientId: client.id, topic: packet.topic }, 'mqtt publish denied');
    done(new Error(`not allowed to publish to ${packet.topic}`));
  };
  const authorizeSubscribe: AedesOptions['authorizeSubscribe'] = (client, sub, done) => {
    const who = principals.get(client);
    if (who?.role === 'server' || (who?.role === 'agent' && agentMaySubscribe(who.node, sub.topic))) return done(null, sub);
    if (who?.role === 'operator') {
      const { clientId, tokenId } = who.operator;
      const n = granted.get(client) ?? 0;
      if (n < MAX_OPERATOR_SUBSCRIPTIONS && operatorMaySubscribe(sub.topic, (name) => name === clientId || replyNames.claim(name, tokenId))) {
        granted.set(client, n + 1);
        return done(null, sub);
      }
    }
    // Bounded: one SUBSCRIBE may carry thousands of filters of any length.
    const d = (denied.get(client) ?? 0) + 1;
    denied.set(client, d);
    if (d <= DENIALS_LOGGED) opts.logger.warn({ clientId: loggable(client.id), topic: sub.topic.slice(0, 200), ...(d === DENIALS_LOGGED ? { more: 'further refusals on this connection are not logged' } : {}) }, 'mqtt subscribe denied');
    // A null subscription denies this filter (SUBACK 128) without dropping the connection.
    done(null, null);
  };
  // aedes' own CONNECT deadline (30 s by default) matches the guard's.
  // Called for each message aedes is about to deliver to a subscriber (retained ones on subscribe too).
  const authorizeForward: AedesOptions['authorizeForward'] = (client, packet) => {
    counters.publish('out', principals.get(client)?.role, packet);
    return packet;
  };
  // aedes' packet writer (mqtt-packet) otherwise fills a table of 65,536 two-byte Buffers on its first
  // write, ~6 MiB of the server's heap (a tenth of it at 1,000 agents) for numbers it can write in place.
  // mqtt.js clients turn the same switch off.
  mqttPacket.writeToStream.cacheNumbers = false;
  let sessionOrder: SessionOrder | undefined;
  // Before aedes restores a returning session's subscriptions (see session-order.ts).
  const preConnect: AedesOptions['preConnect'] = (client, packet, done) => {
    if (packet.clean === false) sessionOrder?.hold(client as unknown as SessionClient);
    done(null, true);
  };
  const aedes = await Aedes.createBroker({ authenticate, authorizePublish, authorizeSubscribe, authorizeForward, preConnect, connectTimeout: CONNECT_TIMEOUT_MS });
  sessionOrder = keepSessionOrder((aedes as unknown as { persistence: Parameters<typeof keepSessionOrder>[0] }).persistence);
  // Before any client: every retained message must pass through the index.
  indexRetained((aedes as unknown as { persistence: Parameters<typeof indexRetained>[0] }).persistence);
  // After authorization: only messages the broker took in count (client null: the broker's own, $SYS).
  aedes.on('publish', (packet, client) => {
    if (client) counters.publish('in', principals.get(client)?.role, packet);
  });
  aedes.on('clientError', (client, err) => opts.logger.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  aedes.on('ping', (_packet, client) => {
    const who = principals.get(client);
    if (who?.role === 'agent' && pingHandler) pingHandler(who.node);
  });
  // A token revoked or expired while its session is open: commands already get 401 from the API, but the
  // retained fleet summary and node states would keep flowing to it. Checked again every few seconds.
  const recheck = setInterval(() => {
    if (!opts.operators) return;
    for (const c of Object.values((aedes as unknown as { clients: Record<string, Client | undefined> }).clients)) {
      const who = c ? principals.get(c) : undefined;
      if (!c || who?.role !== 'operator') continue;
      const check = opts.operators.checkToken(who.operator.token);
      if ('refused' in check) {
        opts.logger.info({ clientId: who.operator.clientId, tokenId: who.operator.tokenId, why: check.refused }, 'mqtt operator disconnected: its token no longer counts');
        c.close();
      }
    }
  }, OPERATOR_RECHECK_MS);
  recheck.unref();
  const accept = (s: Duplex, peer: PeerIdentity | undefined, tls: boolean) => {
    const remote = (s as Partial<Socket>).remoteAddress;
    const next = (conn: Duplex) => {
      if (peer) peers.set(conn, peer);
      if (tls) overTls.add(conn);
      if (remote) remotes.set(conn, remote);
      aedes.handle(conn);
    };
    if (opts.guard) opts.guard.handle(s, next);
    else next(s);
  };

  const servers: Server[] = [];
  let tlsPort: number | undefined;
  let plainPort: number | undefined;
  let url = '';
  try {
    if (opts.tls) {
      const t = opts.tls;
      // noDelay: Nagle would hold each small message for the client's delayed ACK (~40 ms per command reply).
      // A certificate is asked for but not required: operators have none and prove themselves with an API
      // token; one that is presented must be of this CA (checked here), and drover's own client ids need one.
      const server = createTlsServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2', handshakeTimeout: CONNECT_TIMEOUT_MS, noDelay: true, ...(t.ticketKeys ? { ticketKeys: t.ticketKeys } : {}), ...(t.sessionTimeoutSeconds ? { sessionTimeout: t.sessionTimeoutSeconds } : {}) }, (s) => {
        // Read once: node builds the whole object (subject, dates, raw DER) on each call.
        const cert = s.getPeerCertificate();
        if (!s.authorized && presentedCertificate(cert)) {
          opts.logger.debug({ err: String(s.authorizationError), remote: s.remoteAddress }, 'mqtt client certificate refused');
          s.destroy();
          return;
        }
        counters.tlsHandshakes[s.isSessionReused() ? 'resumed' : 'full']++;
        // A resumed session is not verified again: its certificate, kept in the ticket, may have expired since.
        if (s.isSessionReused() && certificateExpired(cert)) {
          opts.logger.debug({ remote: s.remoteAddress }, 'mqtt client certificate refused: expired (resumed TLS session)');
          s.destroy();
          return;
        }
        accept(s, s.authorized ? identityOf(cert) : undefined, true);
      });
      // Rate and pending limits apply at TCP accept, before the (costly) handshake.
      // A refused socket is destroyed by the guard.
      const guard = opts.guard;
      server.on('connection', (raw: Socket) => counters.socket(raw));
      if (guard) server.on('connection', (raw: Socket) => void guard.admit(raw));
      server.on('tlsClientError', (err, sock) => opts.logger.debug({ err: err.message, remote: sock.remoteAddress }, 'mqtt tls handshake refused'));
      servers.push(server);
      tlsPort = await listen(server, t.port, t.host);
      url = `mqtts://${localHost(t.host)}:${tlsPort}`;
    }
    if (opts.plain) {
      const server = createServer({ noDelay: true }, (s) => {
        counters.socket(s);
        if (opts.guard && !opts.guard.admit(s)) return;
        accept(s, undefined, false);
      });
      servers.push(server);
      plainPort = await listen(server, opts.plain.port, opts.plain.host);
      url ||= `mqtt://${localHost(opts.plain.host)}:${plainPort}`;
    }
  } catch (err) {
    for (const s of servers) s.close();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw err;
  }
  return {
    url,
    tlsPort,
    plainPort,
    connectedClients: () => aedes.connectedClients,
    onCommand(handler) {
      commandHandler = handler;
    },
    onAgentPing(handler) {
      pingHandler = handler;
    },
    traffic() {
      const connected = perRole();
      for (const c of Object.values((aedes as unknown as { clients: Record<string, Client | undefined> }).clients)) {
        const role = c ? principals.get(c)?.role : undefined;
        if (role) connected[role]++;
      }
      const copy = (r: Record<'in' | 'out', Record<ClientRole, number>>) => ({ in: { ...r.in }, out: { ...r.out } });
      return { messages: copy(counters.messages), publishBytes: copy(counters.publishBytes), wireBytes: counters.wire(), tlsHandshakes: { ...counters.tlsHandshakes }, connected };
    },
    setTicketKeys(key) {
      for (const s of servers) if ('setTicketKeys' in s) (s as TlsServer).setTicketKeys(key);
    },
    disconnect(clientId) {
      const c = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientId];
      if (!c) return false;
      c.close();
      return true;
    },
    close: async () => {
      clearInterval(recheck);
      // Destroy client sockets first: server.close waits for every connection to end.
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
