/**
 * `sim`: N simulated agents against a running drover server, for load and scale work by hand (the fleet
 * bench starts its own server; this one joins yours). Each agent joins with the join token, then speaks
 * the real MQTT contract from worker processes with a fake runtime (bench/lib/sim.ts, the same agents the
 * fleet bench runs). Prints totals every --report seconds until Ctrl-C.
 *
 * Run: node --import tsx bench/sim.ts --nodes N --server https://HOST:PORT --token-file DATA_DIR/join-token
 *        [--workers W] [--heartbeat S] [--keepalive S] [--insecure] [--keys K] [--join-concurrency C]
 *        [--connect-rate PER_SECOND] [--prefix NAME] [--report S]
 * The join token is read from a file (never from argv, where other users of the machine see it).
 * Node names are PREFIX-00000…; a second run with the same prefix joins the same names again.
 */
import { readFileSync } from 'node:fs';
import { keyPool } from './lib/join.js';
import { startWorkers } from './lib/sim.js';
import { numArg, parseArgs, round, sleep } from './lib/common.js';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const n = numArg(args, 'nodes', 100);
  const server = args.get('server');
  const tokenFile = args.get('token-file');
  if (!server || !tokenFile) throw new Error('--server https://HOST:PORT and --token-file FILE (the server\'s DATA_DIR/join-token) are required');
  const joinToken = readFileSync(tokenFile, 'utf8').trim();
  const workerCount = numArg(args, 'workers', 2);
  const prefix = args.get('prefix') ?? 'sim';
  const reportMs = numArg(args, 'report', 10) * 1000;
  const keys = await keyPool(numArg(args, 'keys', 20));
  const names = Array.from({ length: n }, (_, i) => ({ name: `${prefix}-${String(i).padStart(5, '0')}`, index: i }));
  const workers = await startWorkers(workerCount, names, {
    apiUrl: server,
    joinToken,
    keys,
    insecure: args.has('insecure'),
    joinConcurrency: numArg(args, 'join-concurrency', 8),
    heartbeatSeconds: numArg(args, 'heartbeat', 30),
    keepaliveSeconds: numArg(args, 'keepalive', 15),
    connectPerSecond: numArg(args, 'connect-rate', 200),
  });
  let stopping = false;
  process.once('SIGINT', () => {
    stopping = true;
  });
  const joins = await workers.join();
  console.log(`sim: ${joins.ok} of ${n} joined (${joins.failed} failed)${joins.errorSamples.length ? `: ${joins.errorSamples.slice(0, 3).join('; ')}` : ''}`);
  await workers.connect(() => {});
  let prev = await workers.stats();
  let prevAt = Date.now();
  while (!stopping) {
    await sleep(reportMs);
    const s = await workers.stats();
    const secs = (Date.now() - prevAt) / 1000;
    const bytes = s.bytesIn - prev.bytesIn + (s.bytesOut - prev.bytesOut);
    console.log(`sim: ${s.connectedNow}/${n} connected, ${s.podsRunning} pods running, ${s.statusSent} statuses, ${s.desiredReceived} desired states; ${round((bytes / Math.max(1, s.connectedNow) / secs) * 86_400 / 1024, 1)} KiB/agent/day over the last ${Math.round(secs)} s; workers ${round(s.rssMiB, 0)} MiB`);
    prev = s;
    prevAt = Date.now();
  }
  await workers.stop();
}

main().catch((err: unknown) => {
  console.error(`sim: ${(err as Error).message}`);
  process.exitCode = 1;
});
