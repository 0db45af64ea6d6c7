import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args)).stdout;
  } catch (err) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
}

/**
 * A device on its own network: a network namespace joined to this host by a veth pair. Taking the
 * host end down cuts the link for real (TCP sees silence, MQTT keepalive must notice); iptables
 * statistic rules drop a share of packets. Processes run inside with `nsenter --net` (not
 * `ip netns exec`, which remounts /sys and breaks podman's cgroups).
 */
export interface DeviceLink {
  ns: string;
  hostIf: string;
  nsIf: string;
  /** This host's address on the link: what the device dials to reach the server. */
  hostIp: string;
  deviceIp: string;
  down(): Promise<void>;
  up(): Promise<void>;
  /** Drop this share (0..1) of packets in both directions, or `toHost` of those the device sends. */
  loss(probability: number, toHost?: number): Promise<void>;
  /** Packets the loss rules have dropped so far, per direction (read from iptables' counters). */
  lossDropped(): Promise<{ toHost: number; toDevice: number }>;
  clearLoss(): Promise<void>;
  /** TCP connections the device has established to this host's `port` (the kernel's view, `ss`). */
  established(port: number): Promise<number>;
  /** Spawn a process inside the device's network namespace. */
  spawn(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  destroy(): Promise<void>;
}

// 50 × 250 slots: slot n is the netns `drv<n>`, its veths `vh<n>`/`vn<n>` and the /30 in 10.(200+n/250).(n%250+1).
const SLOTS = 50 * 250;
let nextSlot = randomInt(0, SLOTS);

/**
 * Claims a slot no other test process (or leftover of a killed run) holds: `ip netns add` fails when the
 * name exists, so creating the namespace is the lock, and names and subnets follow from the slot.
 */
async function claimSlot(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const n = nextSlot;
    nextSlot = (nextSlot + 1 + randomInt(0, 7)) % SLOTS;
    try {
      await run('ip', ['netns', 'add', `drv${n}`]);
      return n;
    } catch (err) {
      if (!/File exists/.test((err as { stderr?: string }).stderr ?? '')) throw new Error(`ip netns add drv${n} failed: ${(err as { stderr?: string }).stderr ?? String(err)}`);
    }
  }
  throw new Error('no free network namespace slot after 200 tries (leftover drv* namespaces? `ip netns list`)');
}

export async function createDeviceLink(): Promise<DeviceLink> {
  const n = await claimSlot();
  const ns = `drv${n}`;
  const hostIf = `vh${n}`;
  const nsIf = `vn${n}`;
  const subnet = `10.${200 + Math.floor(n / 250)}.${(n % 250) + 1}`;
  const hostIp = `${subnet}.1`;
  const deviceIp = `${subnet}.2`;
  const nsenter = (args: string[]) => sh('nsenter', [`--net=/run/netns/${ns}`, ...args]);
  // A veth left by a killed run holds the name: remove it (its namespace is gone, or the slot was not free).
  await sh('ip', ['link', 'del', hostIf]).catch(() => {});
  try {
    await sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    await sh('ip', ['link', 'set', nsIf, 'netns', ns]);
    await sh('ip', ['addr', 'add', `${hostIp}/30`, 'dev', hostIf]);
    await sh('ip', ['link', 'set', hostIf, 'up']);
    await nsenter(['ip', 'link', 'set', 'lo', 'up']);
    await nsenter(['ip', 'addr', 'add', `${deviceIp}/30`, 'dev', nsIf]);
    await nsenter(['ip', 'link', 'set', nsIf, 'up']);
    await nsenter(['ip', 'route', 'add', 'default', 'via', hostIp]);
  } catch (err) {
    await sh('ip', ['link', 'del', hostIf]).catch(() => {});
    await sh('ip', ['netns', 'del', ns]).catch(() => {});
    throw err;
  }
  let lossRules: Array<() => Promise<void>> = [];
  const link: DeviceLink = {
    ns,
    hostIf,
    nsIf,
    hostIp,
    deviceIp,
    down: async () => {
      await sh('ip', ['link', 'set', hostIf, 'down']);
    },
    up: async () => {
      await sh('ip', ['link', 'set', hostIf, 'up']);
    },
    async loss(p, toHost = p) {
      await link.clearLoss();
      const rule = (inIf: string, q: number) => ['INPUT', '-i', inIf, '-m', 'statistic', '--mode', 'random', '--probability', String(q), '-j', 'DROP'];
      const hostRule = rule(hostIf, toHost);
      const nsRule = rule(nsIf, p);
      await sh('iptables', ['-A', ...hostRule]);
      await nsenter(['iptables', '-A', ...nsRule]);
      lossRules = [
        async () => void (await sh('iptables', ['-D', ...hostRule])),
        async () => void (await nsenter(['iptables', '-D', ...nsRule])),
      ];
    },
    async lossDropped() {
      // `-L -v -x -n`: exact counters; columns pkts bytes target prot opt in out source destination.
      const dropped = (listing: string, inIf: string) =>
        listing
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .filter((f) => f[2] === 'DROP' && f[5] === inIf && f.includes('statistic'))
          .reduce((sum, f) => sum + Number(f[0]), 0);
      const [host, dev] = await Promise.all([sh('iptables', ['-L', 'INPUT', '-v', '-x', '-n']), nsenter(['iptables', '-L', 'INPUT', '-v', '-x', '-n'])]);
      return { toHost: dropped(host, hostIf), toDevice: dropped(dev, nsIf) };
    },
    async established(port) {
      const out = await nsenter(['ss', '-H', '-t', '-n', 'state', 'established', 'dst', `${hostIp}:${port}`]);
      return out.split('\n').filter((l) => l.trim()).length;
    },
    async clearLoss() {
      for (const r of lossRules) await r().catch(() => {});
      lossRules = [];
    },
    spawn: (cmd, args, opts = {}) => spawn('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args], opts),
    async destroy() {
      await link.clearLoss();
      await sh('ip', ['link', 'del', hostIf]).catch(() => {});
      await sh('ip', ['netns', 'del', ns]).catch(() => {});
    },
  };
  return link;
}
