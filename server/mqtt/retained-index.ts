import { Readable } from 'node:stream';

/** What aedes' persistence offers for retained messages (aedes-persistence 11, callback flavour). */
interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (err: Error | null) => void): unknown;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

interface RetainedPacket {
  topic: string;
  payload: Buffer | Uint8Array | string;
}

/**
 * Exact-topic lookup of retained messages for aedes' in-memory persistence. aedes-persistence 11 answers a
 * SUBSCRIBE by testing every retained message against every filter, exact ones included: an agent that
 * reconnects subscribes to its own two topics, so a fleet of N agents reconnecting after a restart costs
 * N × (4 N retained messages: hello, presence, desired state, node state) topic matches — 7 % of the restarted
 * server's CPU at 1,000 agents (bench/scale.ts profile), quadratic in the fleet. Filters without wildcards
 * are answered from a map kept beside the persistence's own; a SUBSCRIBE with any wildcard (the server's own,
 * operators') or a shared subscription goes to the persistence as before.
 */
export function indexRetained(persistence: RetainedPersistence): { size(): number } {
  const retained = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const combi = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    // As the persistence does: an empty payload clears the topic; a copy, as aedes reuses its packets.
    if (packet.payload.length === 0) retained.delete(packet.topic);
    else retained.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  persistence.createRetainedStreamCombi = (patterns) => {
    if (!patterns.every(isExact)) return combi(patterns);
    const found: RetainedPacket[] = [];
    for (const p of patterns) {
      const packet = retained.get(p);
      if (packet) found.push(packet);
    }
    return Readable.from(found);
  };
  return { size: () => retained.size };
}

const isExact = (filter: string) => !filter.includes('+') && !filter.includes('#') && !filter.startsWith('$share/');
