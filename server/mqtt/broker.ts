import { createServer, type Server } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError } from 'aedes';
import { agentMayPublish, agentMaySubscribe, isTopicSafe } from '../../src/contract/topics.js';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import type { Logger } from '../../src/util/logger.js';

/** Who a connected client is: the server itself, or the agent of one node. */
export type Principal = { role: 'server' } | { role: 'agent'; node: string };

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Decides whether a client may connect and as whom; undefined refuses (deny by default). */
  authenticate: (clientId: string, username: string | undefined, password: string | undefined) => Principal | undefined;
  logger: Logger;
}

export interface EmbeddedBroker {
  url: string;
  port: number;
  connectedClients(): number;
  close(): Promise<void>;
}

/** An aedes broker on a TCP port: the default, zero-dependency mode of a drover server. */
export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  // Keyed by connection, not client id: a reconnect with the same id must not inherit or lose rights.
  const principals = new WeakMap<object, Principal>();
  const authenticate: AedesOptions['authenticate'] = (client, username, password, done) => {
    const who = opts.authenticate(client.id, username, password?.toString('utf8'));
    // A node name becomes part of topic filters in the ACL: `+`, `#` or `/` in it (username `+`) would
    // turn the agent's own-inbox rule into a wildcard over every node.
    if (who && (who.role !== 'agent' || isTopicSafe(who.node))) {
      principals.set(client, who);
      return done(null, true);
    }
    opts.logger.warn({ clientId: client.id, username }, 'mqtt connection refused: bad credentials');
    const err = new Error('bad username or password') as AuthenticateError;
    err.returnCode = 4;
    done(err, false);
  };
  // Per-node ACL: an agent publishes only its own reports and subscribes only to its own inbox, so
  // one device's join token cannot impersonate or eavesdrop on another node.
  const authorizePublish: AedesOptions['authorizePublish'] = (client, packet, done) => {
    if (!client) return done(null);
    if (packet.payload && packet.payload.length > MAX_PAYLOAD_BYTES) return done(new Error(`payload larger than ${MAX_PAYLOAD_BYTES} bytes`));
    const who = principals.get(client);
    if (who?.role === 'server') return done(null);
    if (who?.role === 'agent' && agentMayPublish(who.node, packet.topic)) return done(null);
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
  const aedes = await Aedes.createBroker({ authenticate, authorizePublish, authorizeSubscribe });
  aedes.on('clientError', (client, err) => opts.logger.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
  const server: Server = createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  return {
    url: `mqtt://${host}:${port}`,
    port,
    connectedClients: () => aedes.connectedClients,
    close: async () => {
      // Destroy client sockets first: server.close waits for every connection to end.
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
