/** /proc readings shared by the agent footprint benchmarks (bench/agent-footprint*.ts). */
import { readdirSync, readFileSync } from 'node:fs';

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** The long-lived `podman events` child of an agent (or of a server running its local agent), if running. */
export function podmanEventsPid(agentPid: number): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === agentPid && cmdline(Number(d)).includes('events')) return Number(d);
    } catch {
      // raced with an exiting process
    }
  }
  return undefined;
}
