/**
 * Child process for the durability test: opens a LevelStore at argv[2] and creates Pods as fast as it
 * can, printing each name only after its create resolved (i.e. was acknowledged as durable). The test
 * SIGKILLs it mid-stream and checks that every printed name survived.
 */
import { writeSync } from 'node:fs';
import { LevelStore } from '../../server/store/level.js';

const path = process.argv[2];
/** Creates in flight at once (they share synced batches: group commit). */
const inFlight = Number(process.argv[3] ?? 1);
if (!path || !(inFlight >= 1)) throw new Error('usage: store-writer <store path> [writes in flight]');

const store = await LevelStore.open({ path });
// writeSync: the ack must reach the pipe before the next write starts, not sit in a stream buffer.
writeSync(1, 'ready\n');
let next = 0;
await Promise.all(
  Array.from({ length: inFlight }, async () => {
    for (;;) {
      const i = next++;
      const name = `p${i}`;
      await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { i } });
      writeSync(1, `${name}\n`);
    }
  }),
);
