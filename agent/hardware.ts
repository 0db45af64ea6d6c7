import { createSocket } from 'node:dgram';
import { readdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { hasErrno } from './fs-errors.js';
import { compareNatural } from '../src/util/compare.js';

export interface Hardware {
  arch: string;
  os: string;
  osImage: string;
  kernelVersion: string;
  hostname: string;
  cpu: { cores: number; model: string };
  memoryBytes: number;
  addresses: string[];
  /** Device nodes worth scheduling on (see listDevices). */
  devices: string[];
}

/**
 * /dev entries a workload may ask for: serial ports (ttyS*, ttyAMA*, ttyUSB*, ttyACM* and the like,
 * not the virtual consoles tty0..tty63), GPIO chips, video devices, I2C and SPI buses.
 */
export const DEVICE_PATTERN = /^(tty[A-Za-z]+\d+|gpiochip\d+|video\d+|i2c-\d+|spidev\d+\.\d+)$/;

/** Upper bound on devices reported, so a strange /dev cannot bloat the hello. */
const MAX_DEVICES = 256;

/** The node's schedulable devices as sorted /dev paths; [] when /dev cannot be read. */
export async function listDevices(dir = '/dev'): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    // No /dev to look at (a container without one, another OS): no devices.
    if (hasErrno(err, 'ENOENT', 'ENOTDIR', 'EACCES')) return [];
    throw err;
  }
  return names.filter((n) => DEVICE_PATTERN.test(n)).sort(compareNatural).slice(0, MAX_DEVICES).map((n) => `${dir.replace(/\/$/, '')}/${n}`);
}

/** Node's process.arch → the GOARCH names Kubernetes labels use. */
export function kubeArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
}

/**
 * The source address of the default route, if there is one: a UDP socket "connected" to an outside
 * address (TEST-NET-3; connecting sends nothing) is given the address the kernel would send from.
 */
export async function defaultRouteAddress(): Promise<string | undefined> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(9, '203.0.113.1', resolve);
    });
    const { address } = socket.address();
    return address === '0.0.0.0' ? undefined : address;
  } catch (err) {
    // No route out (an isolated device): no such address.
    if (hasErrno(err, 'ENETUNREACH', 'EHOSTUNREACH', 'EADDRNOTAVAIL')) return undefined;
    throw err;
  } finally {
    socket.close();
  }
}

/**
 * What the hello says of the device, read once at start through systeminformation (it knows the ARM
 * boards' models and distributions node:os does not); loaded here, on first use, so the CLI verbs that share
 * the binary do not pay for it.
 */
export async function readHardware(): Promise<Hardware> {
  const { default: si } = await import('systeminformation');
  const [cpu, mem, os, nets, devices, routed] = await Promise.all([si.cpu(), si.mem(), si.osInfo(), si.networkInterfaces(), listDevices(), defaultRouteAddress()]);
  const list = Array.isArray(nets) ? nets : [nets];
  const found = list.filter((n) => !n.internal && n.ip4 && n.operstate !== 'down').map((n) => n.ip4);
  // The default route's address first: a bridge (podman's 10.88.0.1) may be listed before it.
  const addresses = routed && found.includes(routed) ? [routed, ...found.filter((a) => a !== routed)] : found;
  return {
    arch: kubeArch(process.arch),
    os: process.platform,
    osImage: [os.distro, os.release].filter(Boolean).join(' ') || os.platform,
    kernelVersion: os.kernel,
    hostname: hostname(),
    cpu: { cores: cpu.cores, model: [cpu.manufacturer, cpu.brand].filter(Boolean).join(' ') },
    memoryBytes: mem.total,
    addresses,
    devices,
  };
}

/**
 * What the node offers pods, as the server records it from the hello (status.allocatable: all cores
 * and all memory, nothing reserved): what resourceFieldRef limits.* resolves to for a container
 * without that limit, as the kubelet resolves it to its node's allocatable.
 */
export function nodeAllocatable(h: Pick<Hardware, 'cpu' | 'memoryBytes'>): { cpuMilli: number; memoryBytes: number } {
  return { cpuMilli: h.cpu.cores * 1000, memoryBytes: h.memoryBytes };
}

/** Changes on every reboot: lets the server tell an agent restart from a device reboot. */
export async function readBootId(): Promise<string> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch (err) {
    // Not Linux: every start counts as a reboot.
    if (hasErrno(err, 'ENOENT')) return `boot-${Date.now()}`;
    throw err;
  }
}
