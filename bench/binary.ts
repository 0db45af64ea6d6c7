/**
 * The single binaries: file size (and gzipped, what a download costs), start time, and idle RSS of a
 * server and of an agent run from the binary, beside the same program run from the sources (tsx) and
 * from tsc's output (node dist/). The arm64 and armv7 binaries start under qemu-user here: their times
 * show that they run, not how fast a real ARM board is.
 * Run: node --import tsx bench/binary.ts   (after `npm run build:binary`)
 *   → writes bench/results/binary.json and bench/results/binary.md
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem, release } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { binaryPath, deviceArgv, deviceEnv, type Arch } from '../test/helpers/binary.js';
import { freePort } from '../test/helpers/cluster.js';

const ROOT = new URL('..', import.meta.url).pathname;
const RUNS = 7;
const IDLE_MS = 20_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function gzipSize(file: string): Promise<number> {
  let n = 0;
  const gz = createReadStream(file).pipe(createGzip({ level: 6 }));
  for await (const chunk of gz) n += (chunk as Buffer).length;
  return n;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Wall time of `drover --version`, the shortest complete run: process start, bundle load, exit. */
function versionMs(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  execFileSync(argv[0]!, [...argv.slice(1), '--version'], { env, stdio: 'ignore' });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

interface Program {
  name: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
}

async function programs(home: string): Promise<Program[]> {
  const list: Program[] = [{ name: 'binary amd64', argv: deviceArgv('amd64', await binaryPath('amd64'), []), env: deviceEnv(home, { DROVER_NATIVE_DIR: join(home, 'native') }) }];
  if (existsSync(join(ROOT, 'dist/src/main.js'))) list.push({ name: 'node dist/ (tsc)', argv: [process.execPath, join(ROOT, 'dist/src/main.js')], env: { ...process.env, HOME: home } });
  list.push({ name: 'node + tsx (sources)', argv: [process.execPath, '--import', 'tsx', join(ROOT, 'src/main.ts')], env: { ...process.env, HOME: home } });
  return list;
}

/** Starts a long-running command, waits for `ready` in its output, then samples its RSS after IDLE_MS. */
async function idle(p: Program, args: string[], ready: RegExp): Promise<{ readyMs: number; rssMiB: number; cpuPct: number }> {
  const t0 = Date.now();
  const child = spawn(p.argv[0]!, [...p.argv.slice(1), ...args], { env: p.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const readyMs = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${p.name} ${args[0]}: not ready in 120 s:\n${out}`)), 120_000);
    const on = (d: Buffer) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(Date.now() - t0);
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`${p.name} ${args[0]} exited ${code}:\n${out}`)));
  });
  const ticks = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]);
  };
  const c0 = ticks();
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const cpuPct = ((ticks() - c0) / 100 / (IDLE_MS / 1000)) * 100;
  const rss = rssMiB(child.pid!);
  child.removeAllListeners('exit');
  child.kill('SIGTERM');
  await new Promise((r) => child.on('close', r));
  return { readyMs, rssMiB: Math.round(rss * 10) / 10, cpuPct: Math.round(cpuPct * 100) / 100 };
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'drover-bench-binary-'));
  const result: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: `${cpus().length} x ${cpus()[0]?.model.split(' ').slice(0, 2).join(' ')}, ${Math.round(totalmem() / 1048576)} MiB, kernel ${release()}, node ${process.version}`,
    loadAtStart: loadavg()[0],
  };
  try {
    const files: Record<string, { bytes: number; gzipBytes: number; versionMs?: number }> = {};
    for (const arch of ['amd64', 'arm64', 'arm'] as Arch[]) {
      const file = await binaryPath(arch);
      const times: number[] = [];
      const argv = deviceArgv(arch, file, []);
      for (let i = 0; i < (arch === 'amd64' ? RUNS : 3); i++) times.push(versionMs(argv, deviceEnv(home)));
      files[arch] = { bytes: statSync(file).size, gzipBytes: await gzipSize(file), versionMs: Math.round(median(times)) };
    }
    result.files = files;

    const progs = await programs(home);
    const versions: Record<string, number> = {};
    for (const p of progs) {
      const t: number[] = [];
      for (let i = 0; i < RUNS; i++) t.push(versionMs(p.argv, p.env));
      versions[p.name] = Math.round(median(t));
    }
    result.versionMs = versions;

    // Server alone (no local agent), fresh data dir each time (first start makes the CA and keys),
    // then an agent of the same kind joined to a binary server, idle.
    const servers: Record<string, unknown> = {};
    const agents: Record<string, unknown> = {};
    for (const p of progs) {
      const data = join(home, `data-${p.name.replace(/\W+/g, '-')}`);
      const [apiPort, mqttPort] = [await freePort(), await freePort()];
      const serverArgs = ['server', '--data-dir', data, '--api-port', String(apiPort), '--mqtt-port', String(mqttPort), '--disable-agent', '--log-level', 'warn'];
      const first = await idle(p, serverArgs, /drover server is running/);
      const again = await idle(p, serverArgs, /drover server is running/);
      servers[p.name] = { firstStartMs: first.readyMs, restartMs: again.readyMs, idleRssMiB: again.rssMiB, idleCpuPct: again.cpuPct };

      // The agent joins that server (restarted in the background) with a token file; its runtime is podman.
      const bg = spawn(p.argv[0]!, [...p.argv.slice(1), ...serverArgs], { env: p.env, stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 4000));
      const tokenFile = join(home, 'token');
      await writeFile(tokenFile, (await readFile(join(data, 'join-token'), 'utf8')).trim() + '\n', { mode: 0o600 });
      const conf = join(home, 'containers.conf');
      await writeFile(conf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n');
      const state = join(home, `agent-${p.name.replace(/\W+/g, '-')}`);
      const a = await idle(
        { ...p, env: { ...p.env, CONTAINERS_CONF: conf, DROVER_CA_FILE: join(data, 'tls', 'ca.crt') } },
        ['agent', '--server', `https://127.0.0.1:${apiPort}`, '--token-file', tokenFile, '--node-name', `bench-${Object.keys(agents).length}`, '--state-dir', state, '--podman-root', join(home, 'proot'), '--podman-runroot', join(home, 'prun'), '--log-level', 'info'],
        /connected to server/,
      );
      agents[p.name] = { joinedMs: a.readyMs, idleRssMiB: a.rssMiB, idleCpuPct: a.cpuPct };
      bg.kill('SIGTERM');
      await new Promise((r) => bg.on('close', r));
    }
    result.server = servers;
    result.agent = agents;
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/binary.json'), JSON.stringify(result, null, 2) + '\n');
  const f = result.files as Record<string, { bytes: number; gzipBytes: number; versionMs: number }>;
  const mib = (n: number) => (n / 1048576).toFixed(1);
  const md = [
    '# single binary: size, start, idle RSS',
    '',
    `${result.date as string}, ${result.machine as string}, load ${(result.loadAtStart as number).toFixed(2)} at start. \`node --import tsx bench/binary.ts\`; raw: binary.json.`,
    '',
    '| binary | size | gzipped | `--version` (median) |',
    '|---|---|---|---|',
    ...Object.entries(f).map(([a, v]) => `| drover-linux-${a} | ${mib(v.bytes)} MiB | ${mib(v.gzipBytes)} MiB | ${v.versionMs} ms${a === 'amd64' ? '' : ' (qemu-user on x86_64)'} |`),
    '',
    '| program | `--version` | server first start | server restart | server idle RSS / CPU | agent join → connected | agent idle RSS / CPU |',
    '|---|---|---|---|---|---|---|',
    ...Object.keys(result.versionMs as object).map((name) => {
      const s = (result.server as Record<string, { firstStartMs: number; restartMs: number; idleRssMiB: number; idleCpuPct: number }>)[name]!;
      const a = (result.agent as Record<string, { joinedMs: number; idleRssMiB: number; idleCpuPct: number }>)[name]!;
      return `| ${name} | ${(result.versionMs as Record<string, number>)[name]} ms | ${s.firstStartMs} ms | ${s.restartMs} ms | ${s.idleRssMiB} MiB / ${s.idleCpuPct} % | ${a.joinedMs} ms | ${a.idleRssMiB} MiB / ${a.idleCpuPct} % |`;
    }),
    '',
    `Idle figures after ${IDLE_MS / 1000} s; CPU is percent of one core over that window. Server without a local agent. Start times run until the server prints "drover server is running" / the agent logs "connected to server".`,
    '',
  ].join('\n');
  writeFileSync(join(ROOT, 'bench/results/binary.md'), md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
