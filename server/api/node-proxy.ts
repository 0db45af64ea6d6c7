import { payloads } from '../../src/contract/index.js';
import { BadRequestError, DroverError, NotFoundError } from '../../src/util/errors.js';
import type { Store } from '../store/types.js';
import type { ExecQuery, LogsQuery } from './server.js';

/** Sends one request to a node's agent and waits for its answer (ServerLink over MQTT). */
export interface NodeRequester {
  request(node: string, req: payloads.Request, timeoutMs: number): Promise<payloads.Response>;
}

export interface NodeProxyOptions {
  store: Store;
  link: NodeRequester;
  /**
   * How long a node has to answer a logs request, and the allowance on top of an exec command's own
   * timeout for the round trip.
   */
  requestTimeoutMs: number;
}

/** The node, pod uid and container a logs/exec request is about, refused with kubectl's messages. */
interface Target {
  node: string;
  uid: string | undefined;
  container: string;
}

/**
 * `drover logs` and `drover exec` reach the pod's node: the API asks here, this asks the node's agent
 * over MQTT and turns its answer (or silence) into the API's errors.
 */
export class NodeProxy {
  constructor(private readonly opts: NodeProxyOptions) {}

  async logs(q: LogsQuery): Promise<string> {
    const t = await this.target(q, 'logs');
    const { namespace, pod, tail, previous, sinceSeconds, sinceTime, timestamps, limitBytes } = q;
    const req: payloads.Request = { op: 'logs', namespace, pod, uid: t.uid, container: t.container, tail, previous, sinceSeconds, sinceTime, timestamps, limitBytes };
    const asked = payloads.LOG_OPTIONS.filter((o) => req[o] !== undefined && req[o] !== false);
    const r = await this.opts.link.request(t.node, req, this.opts.requestTimeoutMs);
    // An agent older than an option drops it unread and answers with the whole current log: refused
    // rather than passed on as if it were what was asked (`logs -p` showing the current run).
    const ignored = asked.filter((o) => !r.honoured?.includes(o));
    if (ignored.length && r.ok) {
      throw new DroverError(`node ${t.node}: its agent is too old for ${ignored.join(', ')} (it would answer with the whole current log); upgrade the agent or leave ${ignored.length > 1 ? 'them' : 'it'} out`, { code: 501, reason: 'NotImplemented' });
    }
    return String(this.answer(t.node, req, r) ?? '');
  }

  async exec(q: ExecQuery): Promise<payloads.ExecResult> {
    const t = await this.target(q, 'exec');
    // Not queued for a node that cannot run it now (the request is at-most-once anyway).
    const node = await this.opts.store.get('Node', '', t.node);
    const ready = node?.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status !== 'True') {
      throw new DroverError(`node ${t.node} is not ready (${ready?.reason ?? 'not registered'}${ready?.message ? `: ${ready.message}` : ''}): cannot exec in pod ${q.pod}`, { code: 503, reason: 'NodeNotReady' });
    }
    const req: payloads.Request = { op: 'exec', namespace: q.namespace, pod: q.pod, uid: t.uid, container: t.container, command: q.command, timeoutSeconds: q.timeoutSeconds };
    const data = await this.ask(t.node, req, q.timeoutSeconds * 1000 + this.opts.requestTimeoutMs);
    const parsed = payloads.execResult.safeParse(data);
    if (!parsed.success) throw new DroverError(`node ${t.node}: malformed exec result`, { code: 502, reason: 'AgentError', cause: parsed.error });
    return parsed.data;
  }

  private async target(q: { namespace: string; pod: string; container?: string }, what: string): Promise<Target> {
    const pod = await this.opts.store.get('Pod', q.namespace, q.pod);
    if (!pod) throw new NotFoundError(`pods "${q.pod}"`);
    const node = pod.spec.nodeName;
    if (!node) throw new BadRequestError(`pod ${q.pod} is not scheduled to a node yet: no ${what}`);
    const names = pod.spec.containers.map((c) => c.name);
    if (q.container && !names.includes(q.container)) {
      throw new BadRequestError(`container ${q.container} is not valid for pod ${q.pod} (containers: ${names.join(', ')})`);
    }
    if (!q.container && names.length > 1) {
      throw new BadRequestError(`a container name must be specified for pod ${q.pod}, choose one of: ${names.join(', ')}`);
    }
    return { node, uid: pod.metadata.uid, container: q.container ?? names[0]! };
  }

  /** The agent's answer, or its refusal as an API error (NotFound 404, Conflict 409, anything else 502). */
  private async ask(node: string, req: payloads.Request, timeoutMs: number): Promise<unknown> {
    return this.answer(node, req, await this.opts.link.request(node, req, timeoutMs));
  }

  private answer(node: string, req: payloads.Request, r: payloads.Response): unknown {
    if (r.ok) return r.data;
    // BadRequest: kubectl's own wording, passed on as the kubelet's would be (`logs -p` with no previous run).
    if (r.error?.code === 'BadRequest') throw new BadRequestError(r.error.message);
    const code = r.error?.code === 'NotFound' ? 404 : r.error?.code === 'Conflict' ? 409 : 502;
    throw new DroverError(`node ${node}: ${r.error?.message ?? `${req.op} failed`}`, { code, reason: r.error?.code ?? 'AgentError' });
  }
}
