/**
 * Keeps a persistent session's messages in the order they were published across a reconnect.
 *
 * aedes (1.x) restores a returning session's subscriptions before it replays the messages queued for it
 * (a snapshot of its queue), and delivers a message published in between at once: it overtakes the queue
 * (moscajs/aedes#649), and one published before the snapshot was taken goes out twice. An operator who
 * reads the replies to commands with `mosquitto_sub -c` after sending them (the README does) saw the last
 * reply first. Mosquitto keeps the order.
 *
 * So from CONNECT until the replay is done, live QoS 1/2 deliveries to a returning session are held (they
 * are already in its queue: aedes queues a message for every persistent subscriber before it delivers it),
 * then delivered in publish order, leaving out those the replay sent. QoS 0 is never queued, so it passes.
 */

/** The part of aedes' Client this needs. */
export interface SessionClient {
  deliverQoS: (packet: HeldPacket, cb: () => void) => void;
  once(event: 'connected', listener: () => void): unknown;
}

/** aedes' packets carry the publishing broker's id and counter: together, the message's identity. */
export interface HeldPacket {
  qos: number;
  brokerId?: string;
  brokerCounter?: number;
}

/** aedes-persistence's call that gives a queued message its packet id as it is sent, live or replayed. */
export interface OutgoingPersistence {
  outgoingUpdate(client: object, packet: HeldPacket): Promise<unknown>;
}

const noop = () => {};
const identity = (p: HeldPacket) => `${p.brokerId}:${p.brokerCounter}`;

export interface SessionOrder {
  /** Call before aedes restores the session's subscriptions (aedes' preConnect), for a CONNECT without a clean session. */
  hold(client: SessionClient): void;
}

export function keepSessionOrder(persistence: OutgoingPersistence): SessionOrder {
  /** Per returning client while it connects: the identities of the queued messages the replay has sent. */
  const replayed = new WeakMap<object, Set<string>>();
  const update = persistence.outgoingUpdate.bind(persistence);
  persistence.outgoingUpdate = (client, packet) => {
    // While a client is held, only the replay reaches here for it: its live deliveries are not passed on yet.
    replayed.get(client)?.add(identity(packet));
    return update(client, packet);
  };
  return {
    hold(client) {
      const deliver = client.deliverQoS;
      const sent = new Set<string>();
      let held: HeldPacket[] | undefined = [];
      replayed.set(client, sent);
      // Subscriptions capture client.deliverQoS when they are made; so is this wrapper, for the session's life.
      client.deliverQoS = (packet, cb) => {
        if (!held || packet.qos === 0) return deliver(packet, cb);
        held.push(packet);
        // The broker's emitter waits for this callback: it must not wait for the replay.
        setImmediate(cb);
      };
      client.once('connected', () => {
        const waiting = held ?? [];
        held = undefined;
        replayed.delete(client);
        for (const p of waiting) if (!sent.has(identity(p))) deliver(p, noop);
      });
    },
  };
}
