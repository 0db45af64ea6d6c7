import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import si from 'systeminformation';

export interface Hardware {
  arch: string;
  os: string;
  osImage: string;
  kernelVersion: string;
  hostname: string;
  cpu: { cores: number; model: string };
  memoryBytes: number;
  addresses: string[];
}

/** Node's process.arch → the GOARCH names Kubernetes labels use. */
export function kubeArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[arch] ?? arch;
}

export async function readHardware(): Promise<Hardware> {
  const [cpu, mem, os, nets] = await Promise.all([si.cpu(), si.mem(), si.osInfo(), si.networkInterfaces()]);
  const list = Array.isArray(nets) ? nets : [nets];
  const addresses = list.filter((n) => !n.internal && n.ip4 && n.operstate !== 'down').map((n) => n.ip4);
  return {
    arch: kubeArch(process.arch),
    os: process.platform,
    osImage: [os.distro, os.release].filter(Boolean).join(' ') || os.platform,
    kernelVersion: os.kernel,
    hostname: hostname(),
    cpu: { cores: cpu.cores, model: [cpu.manufacturer, cpu.brand].filter(Boolean).join(' ') },
    memoryBytes: mem.total,
    addresses,
  };
}

/** Changes on every reboot: lets the server tell an agent restart from a device reboot. */
export async function readBootId(): Promise<string> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    return `boot-${Date.now()}`;
  }
}
