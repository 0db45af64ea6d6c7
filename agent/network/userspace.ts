/**
 * Service forwarding where iptables is not usable: a userspace TCP proxy in the agent. Each Service
 * port's cluster IP is put on the loopback interface (`ip addr add IP/32 dev lo`), so containers reach
 * it through their bridge gateway like any address of the host, and the agent listens on
 * clusterIP:port; each nodePort is listened on at every address. A connection goes to the next backend
 * in turn; a backend that refuses is skipped for that connection (the next one is tried).
 *
 * Limits: TCP only (a UDP port is not forwarded; logged once), every byte goes through the agent
 * process (fine for control traffic, not for video), and the pods see the host as the client address.
 */
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { DesiredBackend, DesiredService } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { runCommand, type Command, type ServiceForwarder } from './iptables.js';

/** Longest a connection to one backend may take before the next is tried. */
const CONNECT_TIMEOUT_MS = 3_000;

interface Listener {
  server: Server;
  backends: DesiredBackend[];
  next: number;
}

/** host:port → what listens there. */
type Wanted = Map<string, { host: string; port: number; backends: DesiredBackend[] }>;

/** The listeners these Services need (pure): cluster IP ports over all backends, nodePorts over local ones. */
export function userspaceListeners(services: DesiredService[]): Wanted {
  const out: Wanted = new Map();
  for (const s of services) {
    for (const p of s.ports) {
      if (p.protocol !== 'TCP') continue;
      if (p.backends.length) out.set(`${s.clusterIP}:${p.port}`, { host: s.clusterIP, port: p.port, backends: p.backends });
      const local = p.backends.filter((b) => b.local);
      if (p.nodePort !== undefined && local.length) out.set(`0.0.0.0:${p.nodePort}`, { host: '0.0.0.0', port: p.nodePort, backends: local });
    }
  }
  return out;
}

function localAddresses(): Set<string> {
  return new Set(Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address)));
}

export class UserspaceForwarder implements ServiceForwarder {
  private readonly listeners = new Map<string, Listener>();
  /** Cluster IPs this forwarder put on lo (only those are removed again). */
  private readonly added = new Set<string>();
  private warnedUdp = false;

  constructor(private readonly deps: { logger: Logger; run?: Command }) {}

  async sync(services: DesiredService[]): Promise<void> {
    const wanted = userspaceListeners(services);
    if (!this.warnedUdp && services.some((s) => s.ports.some((p) => p.protocol === 'UDP'))) {
      this.warnedUdp = true;
      this.deps.logger.warn('UDP Service ports are not forwarded without iptables');
    }
    for (const [key, l] of this.listeners) {
      if (!wanted.has(key)) {
        l.server.close();
        this.listeners.delete(key);
      }
    }
    const local = localAddresses();
    const errors: string[] = [];
    for (const [key, w] of wanted) {
      const have = this.listeners.get(key);
      if (have) {
        have.backends = w.backends;
        continue;
      }
      try {
        // All of 127/8 is on lo already (the interface lists only 127.0.0.1).
        if (w.host !== '0.0.0.0' && !local.has(w.host) && !w.host.startsWith('127.')) {
          await (this.deps.run ?? runCommand)('ip', ['addr', 'add', `${w.host}/32`, 'dev', 'lo']);
          this.added.add(w.host);
        }
        this.listeners.set(key, await this.listen(w.host, w.port, w.backends));
      } catch (err) {
        errors.push(`${key}: ${errorMessage(err)}`);
      }
    }
    for (const ip of this.added) {
      if ([...wanted.values()].some((w) => w.host === ip)) continue;
      await (this.deps.run ?? runCommand)('ip', ['addr', 'del', `${ip}/32`, 'dev', 'lo']).catch((err) => this.deps.logger.warn({ ip, err: errorMessage(err) }, 'cannot remove a cluster IP from lo'));
      this.added.delete(ip);
    }
    // The others stay served; the reconciler reports the failure and the next sync tries these again.
    if (errors.length) throw new Error(`cannot proxy ${errors.join('; ')}`);
  }

  private listen(host: string, port: number, backends: DesiredBackend[]): Promise<Listener> {
    const l: Listener = { server: createServer((c) => this.forward(l, c)), backends, next: 0 };
    return new Promise((resolve, reject) => {
      l.server.once('error', reject);
      l.server.listen({ host: isIP(host) ? host : '0.0.0.0', port }, () => {
        l.server.off('error', reject);
        l.server.on('error', (err) => this.deps.logger.warn({ host, port, err: errorMessage(err) }, 'service proxy listener failed'));
        resolve(l);
      });
    });
  }

  /** Pipes the client to the next backend in turn, trying the others when one refuses. */
  private forward(l: Listener, client: Socket): void {
    client.pause();
    client.on('error', () => client.destroy());
    const order = l.backends.map((_, i) => l.backends[(l.next + i) % l.backends.length]!);
    l.next = (l.next + 1) % Math.max(1, l.backends.length);
    const attempt = (i: number): void => {
      const b = order[i];
      if (!b) {
        client.destroy();
        return;
      }
      const up = connect({ host: b.ip, port: b.port });
      let connected = false;
      up.setTimeout(CONNECT_TIMEOUT_MS, () => up.destroy(new Error('connect timeout')));
      up.on('error', () => {
        // Refused or silent before connecting: the next backend; broken later: the client's connection ends.
        if (!connected) attempt(i + 1);
        else client.destroy();
      });
      up.once('connect', () => {
        connected = true;
        up.setTimeout(0);
        client.on('close', () => up.destroy());
        client.pipe(up);
        up.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  }

  async close(): Promise<void> {
    for (const l of this.listeners.values()) l.server.close();
    this.listeners.clear();
    for (const ip of this.added) {
      await (this.deps.run ?? runCommand)('ip', ['addr', 'del', `${ip}/32`, 'dev', 'lo']).catch((err) => this.deps.logger.warn({ ip, err: errorMessage(err) }, 'cannot remove a cluster IP from lo'));
    }
    this.added.clear();
  }
}
