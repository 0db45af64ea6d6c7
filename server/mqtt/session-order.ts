/**
 * Keeps a persistent session's messages in the order they were published across a reconnect.
 *
 * aedes (1.x) restores a returning session's subscriptions before it replays the messages queued for it
 * (a snapshot of its queue), and delivers a message published in between at once: it overtakes the queue
 * (moscajs/aedes#649), and one published before the snapshot was taken goes out twice. An operator who
 * reads the replies to commands with `mosquitto_sub -c` after sending them (the README does) saw the last
 * reply first. Mosquitto keeps the order.
 *
 * So from CONNECT until the replay is done, live deliveries to a returning session are held, then delivered in
 * publish order, leaving out those the replay sent (QoS 1/2 ones are already in its queue: aedes queues a message
 * for every persistent subscriber before it delivers it). QoS 0 ones are held too: aedes drops a message whose
 * broker counter is below the last it delivered to that client, and for a QoS 1 one it then also takes an unsent
 * message out of the session's queue, so a QoS 0 message let through first would lose the held QoS 1 ones for good.
 *
 * A client that keeps its replay going (it reads just fast enough) holds at most MAX_HELD messages; past that
 * it is disconnected: its QoS 1/2 messages stay queued for its next connection, QoS 0 ones are dropped (as MQTT
 * allows).
 */

/** The part of aedes' Client this needs. */
export interface SessionClient {
  deliverQoS: Deliver;
  deliver0: Deliver;
  once(event: 'connected', listener: () => void): unknown;
  close(): void;
}

type Deliver = (packet: HeldPacket, cb: () => void) => void;

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

export const MAX_HELD = 10_000;

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
      const deliverQoS = client.deliverQoS;
      const deliver0 = client.deliver0;
      const sent = new Set<string>();
      let held: { packet: HeldPacket; deliver: Deliver }[] | undefined = [];
      replayed.set(client, sent);
      // The broker's emitter waits for each delivery's callback: it must not wait for the replay.
      const holding = (deliver: Deliver): Deliver => (packet, cb) => {
        if (!held) return deliver(packet, cb);
        if (held.length >= MAX_HELD) {
          held = undefined;
          replayed.delete(client);
          client.close();
        } else held.push({ packet, deliver });
        setImmediate(cb);
      };
      // Subscriptions capture these when they are made (deliverQoS hands QoS 0 packets to client.deliver0):
      // the wrappers stay for the session's life, and pass straight through once the replay is done.
      client.deliverQoS = holding(deliverQoS);
      client.deliver0 = holding(deliver0);
      client.once('connected', () => {
        const waiting = held ?? [];
        held = undefined;
        replayed.delete(client);
        for (const { packet, deliver } of waiting) {
          // Only a QoS 1/2 delivery can have been in the replayed queue.
          if (deliver === deliverQoS && packet.qos > 0 && sent.has(identity(packet))) continue;
          deliver(packet, noop);
        }
      });
    },
  };
}
