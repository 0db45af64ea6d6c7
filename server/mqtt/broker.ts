import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { agentMayPublish, agentMayRetain, agentMaySubscribe, isTopicSafe } from '../../src/contract/topics.js';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import type { Logger } from '../../src/util/logger.js';

/** Who a connected client is: the server itself, or the agent of one node. */
export type Principal = { role: 'server' } | { role: 'agent'; node: string };

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
  tls?: { host: string; port: number; key: string; cert: string; ca: string };
  /** Plain MQTT (`--insecure` only). */
  plain?: { host: string; port: number };
  /** Decides whether a client may connect and as whom (deny by default). */
  authenticate: (attempt: ConnectAttempt) => ConnectDecision;
  /** Limits on hostile input (server/mqtt/limits.ts): admit at TCP accept, then a bounded view of the stream for aedes. */
  guard?: ConnectionGuard;
  logger: Logger;
}

export interface ConnectionGuard {
  admit(socket: Socket): boolean;
  handle(socket: Duplex, next: (conn: Duplex) => void): void;
}

export interface EmbeddedBroker {
  /** Where the server's own client reaches the broker (TLS when there is a TLS listener). */
  url: string;
  tlsPort?: number;
  plainPort?: number;
  connectedClients(): number;
  /** Cuts a client's session at once (a revoked node). True if it was connected. */
  disconnect(clientId: string): boolean;
  close(): Promise<void>;
}

/** The verified certificate of a TLS client, or undefined (plain socket, or a subject drover cannot read as one name). */
function peerIdentity(conn: unknown): PeerIdentity | undefined {
  const sock = conn as Partial<TLSSocket>;
  if (typeof sock.getPeerCertificate !== 'function' || !sock.authorized) return undefined;
  const cert = sock.getPeerCertificate();
  const cn: unknown = cert?.subject?.CN;
  const o: unknown = cert?.subject?.O;
  // node gives an array for a repeated attribute: two CNs are two identities, which is none.
  if (typeof cn !== 'string' || (o !== undefined && typeof o !== 'string') || !cert.serialNumber) return undefined;
  return { cn, o: o as string | undefined, serial: cert.serialNumber.toUpperCase().replace(/^0+/, '') };
}

async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
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
  const authenticate: AedesOptions['authenticate'] = (client, username, password, done) => {
    const attempt: ConnectAttempt = { clientId: client.id, username, password: password?.toString('utf8'), peer: peers.get(client.conn) };
    const decision = opts.authenticate(attempt);
    // A node name becomes part of topic filters in the ACL: `+`, `#` or `/` in it (username `+`) would
    // turn the agent's own-inbox rule into a wildcard over every node.
    if ('principal' in decision && (decision.principal.role !== 'agent' || isTopicSafe(decision.principal.node))) {
      principals.set(client, decision.principal);
      return done(null, true);
    }
    const why = 'refuse' in decision ? decision.why : 'node name not topic-safe';
    // Names only: no password, no certificate body.
    opts.logger.warn({ clientId: client.id, username, cn: attempt.peer?.cn, why }, 'mqtt connection refused');
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
    opts.logger.warn({ clientId: client.id, topic: sub.topic }, 'mqtt subscribe denied');
    // A null subscription denies this filter (SUBACK 128) without dropping the connection.
    done(null, null);
  };
  // aedes' own CONNECT deadline (30 s by default) matches the guard's.
  const aedes = await Aedes.createBroker({ authenticate, authorizePublish, authorizeSubscribe, connectTimeout: CONNECT_TIMEOUT_MS });
  aedes.on('clientError', (client, err) => opts.logger.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  const accept = (s: Duplex, peer: PeerIdentity | undefined) => {
    const next = (conn: Duplex) => {
      if (peer) peers.set(conn, peer);
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
      // The handshake itself refuses a client without a certificate of this CA: nothing unauthenticated reaches aedes.
      const server = createTlsServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', handshakeTimeout: CONNECT_TIMEOUT_MS }, (s) => accept(s, peerIdentity(s)));
      // Rate and pending limits apply at TCP accept, before the (costly) handshake.
      // A refused socket is destroyed by the guard.
      const guard = opts.guard;
      if (guard) server.on('connection', (raw: Socket) => void guard.admit(raw));
      server.on('tlsClientError', (err, sock) => opts.logger.debug({ err: err.message, remote: sock.remoteAddress }, 'mqtt tls handshake refused'));
      servers.push(server);
      tlsPort = await listen(server, t.port, t.host);
      url = `mqtts://${localHost(t.host)}:${tlsPort}`;
    }
    if (opts.plain) {
      const server = createServer((s) => {
        if (opts.guard && !opts.guard.admit(s)) return;
        accept(s, undefined);
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
    disconnect(clientId) {
      const c = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientId];
      if (!c) return false;
      c.close();
      return true;
    },
    close: async () => {
      // Destroy client sockets first: server.close waits for every connection to end.
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
