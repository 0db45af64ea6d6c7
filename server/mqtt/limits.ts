import type { Duplex } from 'node:stream';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import type { Logger } from '../../src/util/logger.js';

/**
 * Limits on what an MQTT client can make the broker hold before and after it authenticates.
 *
 * aedes (1.x) hands the raw socket to mqtt-packet's parser, which buffers a packet until all the bytes
 * its fixed header announced have arrived, with no size bound (aedes issue #831), before CONNECT as well:
 * one unauthenticated connection announcing a 256 MB CONNECT made the broker hold ~250 MB. This guard reads
 * the fixed headers itself, on the bytes as they arrive and before aedes sees them, so an oversized packet is
 * refused from its first five bytes, never buffered.
 */
export interface MqttLimits {
  /** Largest packet, and total bytes, a client may send before the broker accepted its CONNECT (CONNACK 0). */
  preConnectMaxBytes: number;
  /** Largest packet once connected: the contract's payload limit plus room for topic and header. */
  maxPacketBytes: number;
  /** A connection that has not been accepted (CONNACK 0) within this is closed. */
  connectTimeoutMs: number;
  /** Connection attempts per source address: a token bucket refilled at `perSecond`, holding at most `burst`. */
  connectRate: { perSecond: number; burst: number };
  /** Connections not yet accepted, across all sources; more are closed at once. */
  maxPendingConnections: number;
}

export const DEFAULT_MQTT_LIMITS: MqttLimits = {
  preConnectMaxBytes: 64 * 1024,
  maxPacketBytes: MAX_PAYLOAD_BYTES + 64 * 1024,
  connectTimeoutMs: 10_000,
  connectRate: { perSecond: 20, burst: 50 },
  maxPendingConnections: 1024,
};

/** What a guarded connection needs from its socket: a byte stream, and where it comes from for the logs. */
export type GuardedSocket = Duplex & { remoteAddress?: string };

export interface MqttConnectionGuard {
  /**
   * At TCP accept, before any TLS handshake: false, and the socket destroyed, when its source address has used
   * up its connection attempts or too many connections are still unaccepted.
   */
  admit(socket: GuardedSocket): boolean;
  /** Hands `next` (aedes.handle) the connection, checked in place for the packet limits and the connect timeout. */
  handle(socket: GuardedSocket, next: (conn: Duplex) => void): void;
  /** Connections refused so far, by cause (for logs and tests). */
  refused(): Readonly<Record<RefusalCause, number>>;
}

export type RefusalCause = 'rate' | 'pending' | 'first-packet' | 'pre-connect-size' | 'packet-size' | 'malformed' | 'timeout';

const CONNECT = 1;
const CONNACK = 2;

/**
 * Builds the guard. For a plain TCP listener: `net.createServer((s) => { if (guard.admit(s)) guard.handle(s, aedes.handle) })`;
 * for TLS, `admit` on the server's 'connection' event (the raw socket) and `handle` on 'secureConnection'.
 */
export function mqttConnectionGuard(opts: { limits?: Partial<MqttLimits>; logger: Logger; now?: () => number }): MqttConnectionGuard {
  const limits: MqttLimits = { ...DEFAULT_MQTT_LIMITS, ...opts.limits };
  const now = opts.now ?? Date.now;
  const buckets = new ConnectionRate(limits.connectRate, now);
  const counts: Record<RefusalCause, number> = { rate: 0, pending: 0, 'first-packet': 0, 'pre-connect-size': 0, 'packet-size': 0, malformed: 0, timeout: 0 };
  let pending = 0;
  const refuse = (socket: GuardedSocket, cause: RefusalCause, detail: Record<string, unknown> = {}) => {
    counts[cause]++;
    // A flood refused by rate would write one line per attempt: only its first refusal is worth a warning.
    const level = cause === 'rate' && counts.rate % 1000 !== 1 ? 'debug' : 'warn';
    opts.logger[level]({ remote: socket.remoteAddress, cause, ...detail, refusedSoFar: counts[cause] }, 'mqtt connection refused by limits');
    socket.destroy();
  };

  return {
    admit(socket) {
      if (!buckets.take(socket.remoteAddress ?? 'unknown')) {
        refuse(socket, 'rate');
        return false;
      }
      if (pending >= limits.maxPendingConnections) {
        refuse(socket, 'pending', { pending });
        return false;
      }
      return true;
    },
    handle(socket, next) {
      pending++;
      let accepted = false;
      const settle = () => {
        if (accepted) return;
        accepted = true;
        pending--;
        clearTimeout(timer);
      };
      const timer = setTimeout(() => {
        if (!accepted) refuse(socket, 'timeout', { afterMs: limits.connectTimeoutMs });
      }, limits.connectTimeoutMs);
      guardInPlace(socket, limits, {
        onAccepted: settle,
        onViolation: (cause, detail) => refuse(socket, cause, detail),
      });
      socket.once('close', settle);
      next(socket);
    },
    refused: () => ({ ...counts }),
  };
}

/** Token buckets per source address; a full bucket is forgotten, so idle sources cost nothing. */
class ConnectionRate {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep: number;
  constructor(
    private readonly rate: { perSecond: number; burst: number },
    private readonly now: () => number,
  ) {
    this.lastSweep = now();
  }

  take(source: string): boolean {
    const t = this.now();
    this.sweep(t);
    const b = this.buckets.get(source) ?? { tokens: this.rate.burst, at: t };
    b.tokens = Math.min(this.rate.burst, b.tokens + ((t - b.at) / 1000) * this.rate.perSecond);
    b.at = t;
    this.buckets.set(source, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Drops the buckets that have refilled: many sources (spoofed or a large fleet) must not grow the map forever. */
  private sweep(t: number): void {
    if (t - this.lastSweep < 10_000) return;
    this.lastSweep = t;
    const refillMs = (this.rate.burst / this.rate.perSecond) * 1000;
    for (const [k, b] of this.buckets) if (t - b.at >= refillMs) this.buckets.delete(k);
  }
}

/**
 * Checks the connection in place, on the socket aedes reads: every chunk the socket receives has its packets'
 * fixed headers checked before it is buffered for aedes' parser, and outgoing bytes
 * are watched only until the CONNACK, which tells when the client has authenticated. A Duplex in between
 * (as before) cost each connection a stream object with its two states, closures and a copy of every chunk
 * through it: ~1.5 KiB of heap per agent, and a hop per packet.
 */
function guardInPlace(
  socket: GuardedSocket,
  limits: MqttLimits,
  hooks: { onAccepted: () => void; onViolation: (cause: RefusalCause, detail?: Record<string, unknown>) => void },
): void {
  const incoming = new FixedHeaderReader();
  let connack: ConnackWatcher | undefined = new ConnackWatcher();
  let connected = false;
  let preConnectBytes = 0;
  let packets = 0;
  const push = socket.push;
  const write = socket.write;
  /** The cause when `chunk` breaks a limit, else undefined. */
  const check = (chunk: Buffer): [RefusalCause, Record<string, unknown>] | undefined => {
    if (!connected) {
      preConnectBytes += chunk.length;
      if (preConnectBytes > limits.preConnectMaxBytes) return ['pre-connect-size', { bytes: preConnectBytes, limit: limits.preConnectMaxBytes }];
    }
    const headers = incoming.feed(chunk);
    if (headers === 'malformed') return ['malformed', { packet: packets }];
    for (const h of headers) {
      packets++;
      if (packets === 1 && h.type !== CONNECT) return ['first-packet', { type: h.type }];
      const limit = connected ? limits.maxPacketBytes : limits.preConnectMaxBytes;
      if (h.length > limit) return [connected ? 'packet-size' : 'pre-connect-size', { type: h.type, announced: h.length, limit }];
    }
    return undefined;
  };
  // push, not read: the bytes are checked as they arrive from the network (the socket pushes each chunk it
  // reads), also while aedes has stopped reading for an authentication in progress.
  socket.push = function guardedPush(this: GuardedSocket, chunk: unknown, encoding?: BufferEncoding) {
    if (Buffer.isBuffer(chunk) && !this.destroyed) {
      const broken = check(chunk);
      if (broken) {
        hooks.onViolation(broken[0], broken[1]);
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
  socket.write = function guardedWrite(this: GuardedSocket, chunk: unknown, ...rest: unknown[]) {
    if (connack && Buffer.isBuffer(chunk)) {
      const r = connack.feed(chunk);
      if (r !== 'pending') {
        connack = undefined;
        // Past the CONNACK nothing more is watched: later writes go straight to the socket.
        this.write = write;
        if (r === 'accepted') {
          connected = true;
          hooks.onAccepted();
        }
      }
    }
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof socket.write;
}

/** Reads MQTT fixed headers (type nibble, variable-length remaining length) and skips the bodies they announce. */
export class FixedHeaderReader {
  private state: 'type' | 'length' | 'body' = 'type';
  private type = 0;
  private length = 0;
  private lengthBytes = 0;
  private left = 0;

  /** The headers completed by this chunk, or 'malformed' for a remaining length longer than four bytes. */
  feed(chunk: Buffer): Array<{ type: number; length: number }> | 'malformed' {
    const out: Array<{ type: number; length: number }> = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'type') {
        this.type = chunk[i++]! >> 4;
        this.length = 0;
        this.lengthBytes = 0;
        this.state = 'length';
      } else if (this.state === 'length') {
        const b = chunk[i++]!;
        this.length += (b & 0x7f) * 128 ** this.lengthBytes;
        this.lengthBytes++;
        if (b & 0x80) {
          if (this.lengthBytes === 4) return 'malformed';
          continue;
        }
        out.push({ type: this.type, length: this.length });
        this.left = this.length;
        this.state = this.left > 0 ? 'body' : 'type';
      } else {
        const n = Math.min(this.left, chunk.length - i);
        i += n;
        this.left -= n;
        if (this.left === 0) this.state = 'type';
      }
    }
    return out;
  }
}

/**
 * Watches the broker's first outgoing packet: a CONNACK whose return code (3.1.1) or reason code (5) is 0
 * means the client is authenticated. mqtt-packet writes a packet in several small writes, so bytes are
 * gathered until the code byte has passed.
 */
class ConnackWatcher {
  private head: number[] = [];
  private done = false;

  feed(chunk: Buffer): 'accepted' | 'refused' | 'pending' {
    if (this.done) return 'refused';
    for (const b of chunk) {
      this.head.push(b);
      if (this.head[0]! >> 4 !== CONNACK) return this.finish('refused');
      // Fixed header byte, remaining length (1-4 bytes), acknowledge flags, then the code.
      const lenEnd = this.head.slice(1).findIndex((x) => (x & 0x80) === 0);
      if (lenEnd === -1) {
        if (this.head.length > 5) return this.finish('refused');
        continue;
      }
      const codeAt = 1 + lenEnd + 2;
      if (this.head.length > codeAt) return this.finish(this.head[codeAt] === 0 ? 'accepted' : 'refused');
    }
    return 'pending';
  }

  private finish(r: 'accepted' | 'refused'): 'accepted' | 'refused' {
    this.done = true;
    this.head = [];
    return r;
  }
}
