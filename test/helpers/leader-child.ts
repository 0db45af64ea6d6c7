/**
 * Child process for the leader election tests: campaigns with one LeaderElection and prints, as JSON
 * lines, when it starts and stops leading (wall-clock ms, the parent's clock too), so the parent can
 * SIGKILL it while it leads and check that no two leadership intervals overlap.
 * argv[2]: JSON { endpoints, name, identity, leaseDurationSeconds, renewDeadlineSeconds, retryPeriodSeconds }.
 */
import { writeSync } from 'node:fs';
import { LeaderElection } from '../../server/leader/election.js';
import { createLogger } from '../../src/util/logger.js';

const o = JSON.parse(process.argv[2] ?? '{}') as { endpoints: string[]; name: string; identity: string; leaseDurationSeconds: number; renewDeadlineSeconds: number; retryPeriodSeconds: number };
// writeSync: a line must be on the pipe before anything else happens, not in a stream buffer a SIGKILL drops.
const say = (event: string, extra: Record<string, unknown> = {}) => writeSync(1, `${JSON.stringify({ event, at: Date.now(), ...extra })}\n`);
const election = new LeaderElection({
  ...o,
  logger: createLogger({ name: 'leader-child', level: 'warn', destination: process.stderr }),
  onStartedLeading: () => void say('started'),
  onStoppedLeading: (reason) => void say('stopped', { reason }),
});
election.start();
say('ready');
process.on('SIGTERM', () => void election.close().then(() => process.exit(0)));
