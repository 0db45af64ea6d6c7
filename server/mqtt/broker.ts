import { createServer, type Server } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError } from 'aedes';
import type { Logger } from '../../src/util/logger.js';

export interface EmbeddedBrokerOptions {
  host: string;
  port: number;
  /** Decides whether a client may connect; deny by default (aedes' own default allows everyone). */
  authenticate: (clientId: string, username: string | undefined, password: string | undefined) => boolean;
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
  const authenticate: AedesOptions['authenticate'] = (client, username, password, done) => {
    const ok = opts.authenticate(client.id, username, password?.toString('utf8'));
    if (ok) return done(null, true);
    opts.logger.warn({ clientId: client.id, username }, 'mqtt connection refused: bad credentials');
    const err = new Error('bad username or password') as AuthenticateError;
    err.returnCode = 4;
    done(err, false);
  };
  const aedes = await Aedes.createBroker({ authenticate });
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
