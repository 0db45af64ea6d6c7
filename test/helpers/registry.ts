/**
 * A NodeRegistry on a real LevelStore in a temp dir, with one node that has said hello: the fixture of the tests
 * that feed the registry agent statuses and read the Node it writes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/api/node.js';
import { encode, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { NodeRegistry, type RegistryOptions } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello } from '../fuzz/agent-reports.js';

export interface RegistryFixture {
  store: LevelStore;
  registry: NodeRegistry;
  /** The node's next status (seq counting up), with `extra` over an empty, healthy one. */
  status(extra: Partial<payloads.Status>): payloads.Status;
  /** Hands the registry that status, as the broker would. */
  report(extra: Partial<payloads.Status>): Promise<unknown>;
  /** The Node as stored now. */
  node(): Promise<Node>;
  close(): Promise<void>;
}

/** A registry on `store` with the tests' usual parts (silent logs, 110 pods per node), `extra` over them. */
export function testRegistry(store: LevelStore, extra: Partial<RegistryOptions> = {}): NodeRegistry {
  return new NodeRegistry({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, liveness: new NodeLiveness({ flapThreshold: 5, flapWindowMs: 60_000 }), maxPodsPerNode: 110, ...extra });
}

export async function registryWithNode(prefix: string, name = 'edge-1', bootId = 'boot-1'): Promise<RegistryFixture> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  const registry = testRegistry(store);
  await registry.handle({ kind: 'hello', node: name }, encode(agentHello(name, bootId)));
  let seq = 0;
  const status = (extra: Partial<payloads.Status>): payloads.Status => ({
    node: name,
    bootId,
    seq: ++seq,
    observedGeneration: 0,
    ts: new Date().toISOString(),
    pods: [],
    runtimeHealthy: true,
    heartbeatSeconds: 30,
    ...extra,
  });
  return {
    store,
    registry,
    status,
    report: (extra) => registry.handle({ kind: 'status', node: name }, encode(status(extra))),
    node: async () => (await store.get('Node', '', name))!,
    close: async () => {
      await registry.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
