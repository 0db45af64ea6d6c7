/**
 * `sim` by hand without the CLI: N simulated agents (src/sim, the same agents `drover sim` and the
 * fleet and scale benches run) against a running drover server. Logs totals every --report seconds
 * until Ctrl-C.
 *
 * Run: node --import tsx bench/sim.ts --nodes N --server https://HOST:PORT --token-file DATA_DIR/join-token
 *        [--workers W] [--broker mqtts://HOST:PORT] [--link-profile default|cellular] [--heartbeat S]
 *        [--keepalive S] [--pods-per-node N] [--pod-start-ms MS] [--keys K] [--join-concurrency C]
 *        [--connect-rate PER_SECOND] [--prefix NAME] [--report S]
 * The join token is read from a file (never from argv, where other users of the machine see it).
 */
import { readFileSync } from 'node:fs';
import { runSim, SIM_DEFAULTS } from '../src/sim/run.js';
import { createLogger } from '../src/util/logger.js';
import { numArg, parseArgs } from './lib/common.js';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const server = args.get('server');
  const tokenFile = args.get('token-file');
  if (!server || !tokenFile) throw new Error("--server https://HOST:PORT and --token-file FILE (the server's DATA_DIR/join-token) are required");
  const logger = createLogger({ name: 'sim', level: 'info' });
  const sim = await runSim(
    {
      server,
      joinToken: readFileSync(tokenFile, 'utf8').trim(),
      nodes: numArg(args, 'nodes', 100),
      workers: numArg(args, 'workers', SIM_DEFAULTS.workers),
      prefix: args.get('prefix') ?? SIM_DEFAULTS.prefix,
      brokerUrl: args.get('broker'),
      linkProfile: args.get('link-profile') ?? SIM_DEFAULTS.linkProfile,
      keepaliveSeconds: args.has('keepalive') ? numArg(args, 'keepalive', 15) : undefined,
      heartbeatSeconds: args.has('heartbeat') ? numArg(args, 'heartbeat', 30) : undefined,
      podsPerNode: numArg(args, 'pods-per-node', SIM_DEFAULTS.podsPerNode),
      podStartMs: numArg(args, 'pod-start-ms', SIM_DEFAULTS.podStartMs),
      keys: numArg(args, 'keys', SIM_DEFAULTS.keys),
      joinConcurrency: numArg(args, 'join-concurrency', SIM_DEFAULTS.joinConcurrency),
      connectPerSecond: numArg(args, 'connect-rate', SIM_DEFAULTS.connectPerSecond),
      reportSeconds: numArg(args, 'report', SIM_DEFAULTS.reportSeconds),
    },
    logger,
  );
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  await sim.stop();
}

main().catch((err: unknown) => {
  console.error(`sim: ${(err as Error).message}`);
  process.exitCode = 1;
});
