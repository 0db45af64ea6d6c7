/**
 * Applies planRules (agent/network/rules.ts) with iptables-restore: the Service forwarding a node's
 * desired state asks for, replaced as a whole at each sync, and removed entirely on close (agent stop,
 * uninstall). Unchanged desired Services cost no iptables call.
 */
import { execa } from 'execa';
import type { DesiredService } from '../../src/contract/payloads.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { droverChains, HOOKS, planCleanup, planRules } from './rules.js';

export class NetworkError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'NetworkError', cause });
  }
}

/** Runs one command, stdin optional; resolves with stdout, throws NetworkError with its stderr. */
export type Command = (cmd: string, args: string[], stdin?: string) => Promise<string>;

export const runCommand: Command = async (cmd, args, stdin) => {
  const r = await execa(cmd, args, { input: stdin, reject: false, timeout: 30_000 });
  if (r.exitCode !== 0) throw new NetworkError(`${cmd} ${args.join(' ')} failed (exit ${r.exitCode}): ${String(r.stderr).trim().slice(0, 500)}`);
  return String(r.stdout);
};

/** What the agent's reconciler drives: forwarding for the desired Services, and its removal. */
export interface ServiceForwarder {
  sync(services: DesiredService[]): Promise<void>;
  close(): Promise<void>;
}

/** Is iptables usable here (the binary answers and the nat table can be read)? */
export async function iptablesUsable(run: Command = runCommand): Promise<boolean> {
  try {
    await run('iptables', ['-t', 'nat', '-S', 'PREROUTING']);
    return true;
  } catch {
    // The reason (no binary, no permission, no nat module) is the caller's to log: it picks another way.
    return false;
  }
}

/** How often the hooks from the built-in chains are checked while nothing else changes. */
export const HOOK_RECHECK_MS = 60_000;

export class IptablesForwarder implements ServiceForwarder {
  private applied: string | undefined;
  /** Whether this forwarder has put rules in place since it started (or last closed). */
  private touched = false;
  /** Whether the hooks from the built-in chains are known to be in place, and since when. */
  private hooked = false;
  private hooksCheckedAt = 0;
  /** drover's nat chains as the last restore left them; undefined: read them from the kernel. */
  private chains: string[] | undefined;

  constructor(private readonly deps: { run?: Command; logger: Logger }) {}

  private get run(): Command {
    return this.deps.run ?? runCommand;
  }

  /** Hangs drover's top chains from the built-in ones once (first in each, before podman's). */
  private async hook(): Promise<void> {
    for (const [table, builtin, chain] of HOOKS) {
      // The chain must exist before a rule can jump to it.
      await this.run('iptables', ['-t', table, '-N', chain]).catch(() => undefined);
      const present = await this.run('iptables', ['-t', table, '-C', builtin, '-j', chain]).then(
        () => true,
        () => false,
      );
      if (!present) await this.run('iptables', ['-t', table, '-I', builtin, '1', '-j', chain]);
    }
  }

  async sync(services: DesiredService[]): Promise<void> {
    const first = planRules(services);
    // A firewall reload (firewalld, an admin's iptables -F) drops the hooks: they are looked at again now and then.
    const recheck = this.touched && Date.now() - this.hooksCheckedAt > HOOK_RECHECK_MS;
    if (recheck) this.hooked = false;
    if (this.applied === first.restore && !recheck) return;
    // Nothing to forward and nothing forwarded yet: a node without Services has no drover rules at all.
    if (services.length === 0 && this.applied === undefined && !this.touched) return;
    this.touched = true;
    // Each iptables call costs a few hundred milliseconds on a busy device: after the first sync, one
    // restore does it all (the hooks are in place, and the per-port chains are the ones the last plan made).
    try {
      if (!this.hooked) {
        await this.hook();
        this.hooksCheckedAt = Date.now();
      }
      this.hooked = true;
      const stale = this.chains ?? droverChains(await this.run('iptables', ['-t', 'nat', '-S'])).filter((c) => c.startsWith('DROVER-SVC-') || c.startsWith('DROVER-NP-'));
      const plan = planRules(services, { nat: stale });
      await this.run('iptables-restore', ['--noflush', '--wait'], plan.restore);
      this.chains = plan.chains.nat;
    } catch (err) {
      // Someone else may have changed the tables (a firewall reload): look at them again next time.
      this.hooked = false;
      this.chains = undefined;
      throw err;
    }
    this.applied = first.restore;
    this.deps.logger.info({ services: services.length, ports: services.reduce((n, s) => n + s.ports.length, 0) }, 'service forwarding rules applied');
  }

  /** Removes every drover rule and chain (agent stop, uninstall). */
  async close(): Promise<void> {
    if (!this.touched) return;
    this.touched = false;
    this.hooked = false;
    this.chains = undefined;
    this.applied = undefined;
    for (const [table, builtin, chain] of HOOKS) {
      // -D removes one copy; a hook added twice (two agents racing once) goes on the next round.
      for (let i = 0; i < 5; i++) {
        const removed = await this.run('iptables', ['-t', table, '-D', builtin, '-j', chain]).then(
          () => true,
          () => false,
        );
        if (!removed) break;
      }
    }
    try {
      const found = {
        nat: droverChains(await this.run('iptables', ['-t', 'nat', '-S'])),
        filter: droverChains(await this.run('iptables', ['-t', 'filter', '-S'])),
      };
      await this.run('iptables-restore', ['--noflush', '--wait'], planCleanup(found));
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err) }, 'cannot remove the service forwarding rules');
    }
  }
}
