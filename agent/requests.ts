/**
 * Requests the server relays from a user (`drover logs`, `drover exec`), answered from the runtime.
 */
import type { payloads } from '../src/contract/index.js';
import { LABELS } from './engine/naming.js';
import type { ContainerRuntime } from './runtime/types.js';

export class RequestHandler {
  constructor(private readonly runtime: ContainerRuntime) {}

  async handle(req: payloads.Request): Promise<payloads.Response> {
    // The newest container of the pod (a restarted one leaves its predecessor until cleanup).
    const all = await this.runtime.list({ [LABELS.managed]: 'true' });
    const c = all
      .filter((x) => x.labels[LABELS.namespace] === req.namespace && x.labels[LABELS.pod] === req.pod && (!req.uid || x.labels[LABELS.podUid] === req.uid) && (!req.container || x.labels[LABELS.container] === req.container))
      .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''))[0];
    const what = `pod ${req.namespace}/${req.pod}${req.container ? ` container ${req.container}` : ''}`;
    if (!c) return { ok: false, error: { code: 'NotFound', message: `no container for ${what} on this node (not started yet?)` } };
    switch (req.op) {
      case 'logs':
        return { ok: true, data: await this.runtime.logs(c.id, { tail: req.tail }) };
      case 'exec': {
        if (c.state !== 'running') return { ok: false, error: { code: 'Conflict', message: `cannot exec in ${what}: the container is ${c.state}, not running` } };
        const r = await this.runtime.exec(c.id, req.command, req.timeoutSeconds * 1000);
        return { ok: true, data: { exitCode: r.exitCode, output: r.output, timedOut: r.timedOut } satisfies payloads.ExecResult };
      }
    }
  }
}
