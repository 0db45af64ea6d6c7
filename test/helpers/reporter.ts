/**
 * An agent Reporter of node edge-1 whose link records every status it is given (always connected), with the
 * image manager's view (`images`) the test sets: for tests of what a status carries and when it is sent.
 */
import type { AgentConfig } from '../../agent/config.js';
import type { AgentLink } from '../../agent/connection.js';
import type { Hardware } from '../../agent/hardware.js';
import { EventJournal } from '../../agent/journal.js';
import { Reporter } from '../../agent/reporter.js';
import type { Status } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime } from './fake-runtime.js';

export function recordingReporter(images: ConstructorParameters<typeof Reporter>[0]['images']): { reporter: Reporter; sent: Status[] } {
  const sent: Status[] = [];
  const link = { connected: true, publishStatus: (st: Status) => (sent.push(st), true) } as unknown as AgentLink;
  const reporter = new Reporter({
    cfg: { node: 'edge-1', heartbeatSeconds: 600, keepaliveSeconds: 15 } as AgentConfig,
    link,
    runtime: new FakeRuntime(),
    hardware: {} as Hardware,
    bootId: 'boot',
    logger: silentLogger,
    journal: new EventJournal(),
    nodeIP: () => undefined,
    runtimeVersion: () => '1',
    now: Date.now,
    images,
  });
  return { reporter, sent };
}
