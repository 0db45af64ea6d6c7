import { Readable } from 'node:stream';

/** What aedes' persistence offers for retained messages (aedes-persistence 11, callback flavour). */
interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (err: Error | null) => void): unknown;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

interface RetainedPacket {
  topic: string;
  payload: Buffer | Uint8Array | string;
}

/**
 * Retained messages by topic for aedes' in-memory persistence. aedes-persistence 11 answers a SUBSCRIBE by
 * testing every retained message against every filter: an agent that reconnects subscribes to its own inbox,
 * so a fleet of N agents reconnecting after a restart costs N × (4 N retained messages: hello, presence,
 * desired state, node state) topic matches — 7-11 % of the restarted server's CPU at 1,000 agents
 * (bench/scale.ts profile), quadratic in the fleet. Exact filters are answered from a map, and filters whose
 * only wildcard is a last `+` (an agent's `…/req/+`) from the topics one level below their parent; any other
 * filter (`#`, an inner `+`, a shared subscription) goes to the persistence as before.
 */
export function indexRetained(persistence: RetainedPersistence): { size(): number } {
  const retained = new Map<string, RetainedPacket>();
  /** Topics by their parent (the topic without its last level), for filters ending in `/+`. */
  const children = new Map<string, Set<string>>();
  const store = persistence.storeRetained.bind(persistence);
  const single = persistence.createRetainedStream.bind(persistence);
  const combi = persistence.createRetainedStreamCombi.bind(persistence);

  persistence.storeRetained = (packet, cb) => {
    const parent = parentOf(packet.topic);
    // As the persistence does: an empty payload clears the topic; a copy, as aedes reuses its packets.
    if (packet.payload.length === 0) {
      retained.delete(packet.topic);
      const set = children.get(parent);
      set?.delete(packet.topic);
      if (set?.size === 0) children.delete(parent);
    } else {
      retained.set(packet.topic, { ...packet });
      let set = children.get(parent);
      if (!set) children.set(parent, (set = new Set()));
      set.add(packet.topic);
    }
    return store(packet, cb);
  };

  const lookup = (filter: string): RetainedPacket[] | undefined => {
    if (filter.startsWith('$share/') || filter.includes('#')) return undefined;
    const plus = filter.indexOf('+');
    if (plus === -1) {
      const p = retained.get(filter);
      return p ? [p] : [];
    }
    // Only a last-level `+` after a literal parent: "a/b/+" matches the topics one level below "a/b" (never at
    // the first level, so the $-topic rule of MQTT 4.7.2 does not arise).
    if (plus !== filter.length - 1 || filter.length < 2 || filter[plus - 1] !== '/') return undefined;
    const parent = filter.slice(0, -2);
    if (parent.includes('+')) return undefined;
    const out: RetainedPacket[] = [];
    for (const t of children.get(parent) ?? []) {
      const p = retained.get(t);
      if (p) out.push(p);
    }
    return out;
  };

  persistence.createRetainedStreamCombi = (patterns) => {
    const found = patterns.map(lookup);
    if (found.every((f) => f === undefined)) return combi(patterns);
    return Readable.from(
      (async function* () {
        for (let i = 0; i < patterns.length; i++) {
          const f = found[i];
          if (f) yield* f;
          else yield* single(patterns[i]!);
        }
      })(),
    );
  };
  return { size: () => retained.size };
}

const parentOf = (topic: string) => {
  const i = topic.lastIndexOf('/');
  return i === -1 ? '' : topic.slice(0, i);
};
