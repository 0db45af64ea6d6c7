import { EXEC_ARG_MAX, EXEC_ARGS_MAX } from '../../src/contract/payloads.js';
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { KINDS, type KindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { parseObject } from '../../src/api/validate.js';
import { BadRequestError, DroverError, NotFoundError, UnauthorizedError, ValidationError, errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { isKind, type Store } from '../store/types.js';
import { pathSegments } from './path.js';
import { readJson, sendError, sendJson, sendText } from './respond.js';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';

export interface LogsQuery {
  namespace: string;
  pod: string;
  container?: string;
  tail?: number;
}

export interface ExecQuery {
  namespace: string;
  pod: string;
  container?: string;
  command: string[];
  timeoutSeconds: number;
}

export interface ApiDeps {
  store: Store;
  logger: Logger;
  adminToken: string;
  /** Fetches a pod's container log from its node's agent. */
  logs(q: LogsQuery): Promise<string>;
  /** Runs a command in a pod's container on its node (no tty, no stdin); absent: exec not offered. */
  exec?(q: ExecQuery): Promise<{ exitCode: number; output: string; timedOut: boolean }>;
  ready(): boolean;
  /** Latest reported resource use, served under /apis/metrics.k8s.io/v1beta1. */
  metrics?: { nodeMetrics(): unknown; podMetrics(namespace?: string): unknown };
  /** Namespaces that cannot be deleted. */
  protectedNamespaces?: string[];
}

interface Route {
  kind: KindInfo;
  namespace?: string;
  name?: string;
  sub?: string;
}

class MethodNotAllowed extends DroverError {
  constructor(method: string, path: string) {
    super(`method ${method} is not supported on ${path}`, { code: 405, reason: 'MethodNotAllowed' });
  }
}

/** Maps a k8s-style path onto (kind, namespace, name, subresource). */
export function route(segs: string[]): Route | undefined {
  let rest: string[];
  let groupVersion: string;
  if (segs[0] === 'api' && segs[1] === 'v1') {
    groupVersion = 'v1';
    rest = segs.slice(2);
  } else if (segs[0] === 'apis' && segs.length >= 3) {
    groupVersion = `${segs[1]}/${segs[2]}`;
    rest = segs.slice(3);
  } else return undefined;
  const find = (plural: string | undefined) => KINDS.find((k) => k.plural === plural && k.groupVersion === groupVersion);
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const kind = find(rest[2]);
    if (!kind || !kind.namespaced || rest.length > 5) return undefined;
    return { kind, namespace: rest[1], name: rest[3], sub: rest[4] };
  }
  const kind = find(rest[0]);
  if (!kind || rest.length > 2) return undefined;
  return { kind, name: rest[1] };
}

function tokenOk(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function what(kind: KindInfo, name: string): string {
  return `${kind.plural} "${name}"`;
}

/**
 * The HTTP API: Kubernetes-shaped paths and objects, validated with the same schemas as the CLI,
 * bearer-token protected. Handlers are thin: the store enforces versions and durability.
 */
export class ApiServer {
  private server: Server | undefined;

  constructor(private readonly deps: ApiDeps) {}

  async listen(host: string, port: number): Promise<{ url: string; port: number }> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        // A refused request (a bad path, a bad body) is the client's problem, not the server's.
        const refused = err instanceof DroverError && err.code < 500;
        this.deps.logger[refused ? 'info' : 'error']({ err: errorMessage(err), url: req.url }, refused ? 'api request refused' : 'api handler failed');
        if (!res.headersSent) sendError(res, err);
        else res.end();
      });
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    const p = typeof addr === 'object' && addr ? addr.port : port;
    const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return { url: `http://${h}:${p}`, port: p };
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz' || url.pathname === '/livez') return sendText(res, 200, 'ok');
    if (url.pathname === '/readyz') return this.deps.ready() ? sendText(res, 200, 'ok') : sendText(res, 503, 'not ready');
    if (!tokenOk(req.headers.authorization, this.deps.adminToken)) return sendError(res, new UnauthorizedError());
    const metrics = /^\/apis\/metrics\.k8s\.io\/v1beta1\/(?:nodes|pods|namespaces\/([^/]+)\/pods)$/.exec(url.pathname);
    if (metrics && method === 'GET') {
      if (!this.deps.metrics) return sendError(res, new NotFoundError('metrics'));
      return sendJson(res, 200, url.pathname.endsWith('/nodes') ? this.deps.metrics.nodeMetrics() : this.deps.metrics.podMetrics(metrics[1] ? decodeURIComponent(metrics[1]) : undefined));
    }
    const r = route(pathSegments(req.url ?? '/'));
    if (!r) return sendError(res, new NotFoundError(`the server could not find the requested resource (${url.pathname}):`));
    try {
      if (r.sub) {
        if (r.kind.kind === 'Pod' && r.sub === 'log' && method === 'GET') return await this.podLog(res, r, url);
        if (r.kind.kind === 'Pod' && r.sub === 'exec' && method === 'POST') return await this.podExec(req, res, r);
        throw new NotFoundError(`subresource ${r.sub} of ${r.kind.plural}`);
      }
      if (!r.name) {
        if (method === 'GET' && ['1', 'true'].includes(url.searchParams.get('watch') ?? '')) return await this.watch(req, res, r, url);
        if (method === 'GET') return await this.list(res, r, url);
        if (method === 'POST') return await this.create(req, res, r);
        throw new MethodNotAllowed(method, url.pathname);
      }
      if (method === 'GET') return await this.get(res, r);
      if (method === 'PUT') return await this.update(req, res, r);
      if (method === 'DELETE') return await this.remove(res, r);
      throw new MethodNotAllowed(method, url.pathname);
    } catch (err) {
      if (!(err instanceof DroverError) || err.code >= 500) this.deps.logger.warn({ err: errorMessage(err), method, path: url.pathname }, 'api request failed');
      sendError(res, err);
    }
  }

  private ns(r: Route): string {
    return r.kind.namespaced ? r.namespace ?? 'default' : '';
  }

  private async list(res: ServerResponse, r: Route, url: URL): Promise<void> {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const { items, revision } = await this.deps.store.list(r.kind.kind, r.kind.namespaced ? r.namespace : undefined);
    sendJson(res, 200, {
      kind: `${r.kind.kind}List`,
      apiVersion: r.kind.groupVersion,
      metadata: { resourceVersion: String(revision) },
      items: items.filter((o) => matchesLabels(o, labels) && matchesFields(o, fields)),
    });
  }

  /**
   * `?watch=1`: a stream of JSON lines `{type, object}`, as Kubernetes sends. Without a
   * resourceVersion the current objects come first as ADDED (what `get -w` shows), then changes.
   */
  private async watch(req: IncomingMessage, res: ServerResponse, r: Route, url: URL): Promise<void> {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const ns = r.kind.namespaced ? r.namespace : undefined;
    const match = (o: ApiObject) => (!ns || o.metadata.namespace === ns) && matchesLabels(o, labels) && matchesFields(o, fields);
    const rvParam = url.searchParams.get('resourceVersion');
    let from: number;
    const initial: ApiObject[] = [];
    if (rvParam && rvParam !== '0') {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) throw new BadRequestError(`resourceVersion must be a number, got "${rvParam}"`);
    } else {
      const list = await this.deps.store.list(r.kind.kind, ns);
      from = list.revision;
      initial.push(...list.items.filter(match));
    }
    const w = this.deps.store.watch(
      from,
      (e) => {
        if (match(e.object)) res.write(JSON.stringify({ type: e.type, object: e.object }) + '\n');
      },
      { kinds: [r.kind.kind] },
    );
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
    // A quiet collection must still look connected to the client.
    res.flushHeaders();
    for (const o of initial) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    req.on('close', () => {
      w.close();
      if (timer) clearTimeout(timer);
    });
  }

  private async get(res: ServerResponse, r: Route): Promise<void> {
    const obj = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
    if (!obj) throw new NotFoundError(what(r.kind, r.name!));
    sendJson(res, 200, obj);
  }

  /** Validates a body for this route: the kind and namespace in the body must agree with the path. */
  private async parseBody(req: IncomingMessage, r: Route): Promise<{ obj: ApiObject; warnings: string[] }> {
    const body = await readJson(req);
    const { object, kind, warnings } = parseObject(body);
    if (kind.kind !== r.kind.kind) throw new BadRequestError(`the body is a ${kind.kind}, but the path is for ${r.kind.plural}`);
    if (kind.namespaced) {
      const ns = this.ns(r);
      if (object.metadata.namespace && object.metadata.namespace !== ns) {
        throw new BadRequestError(`the namespace of the object (${object.metadata.namespace}) does not match the namespace of the path (${ns})`);
      }
      object.metadata.namespace = ns;
    }
    if (r.name && object.metadata.name !== r.name) {
      throw new BadRequestError(`the name of the object (${object.metadata.name}) does not match the name in the path (${r.name})`);
    }
    return { obj: object, warnings };
  }

  private warningHeader(warnings: string[]): Record<string, string[]> {
    return warnings.length ? { warning: warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {};
  }

  private async create(req: IncomingMessage, res: ServerResponse, r: Route): Promise<void> {
    const { obj, warnings } = await this.parseBody(req, r);
    if (obj.kind === 'Pod') obj.status = { phase: 'Pending' };
    if (obj.kind === 'Namespace') obj.status = { phase: 'Active' };
    delete obj.metadata.resourceVersion;
    const created = await this.deps.store.create(obj);
    sendJson(res, 201, created, this.warningHeader(warnings));
  }

  private async update(req: IncomingMessage, res: ServerResponse, r: Route): Promise<void> {
    const { obj, warnings } = await this.parseBody(req, r);
    const cur = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
    if (!cur) throw new NotFoundError(what(r.kind, r.name!));
    // Status belongs to the system (agents, scheduler); a user's PUT changes spec and metadata only.
    obj.status = cur.status;
    if (isKind(obj, 'Pod') && isKind(cur, 'Pod')) {
      if (!obj.spec.nodeName) obj.spec.nodeName = cur.spec.nodeName;
      else if (cur.spec.nodeName && obj.spec.nodeName !== cur.spec.nodeName) {
        throw new ValidationError([{ field: 'spec.nodeName', message: `pod is bound to ${cur.spec.nodeName}; a bound pod cannot move (delete and re-create it)` }]);
      }
    }
    const updated = await this.deps.store.update(obj);
    sendJson(res, 200, updated, this.warningHeader(warnings));
  }

  private async remove(res: ServerResponse, r: Route): Promise<void> {
    const { store } = this.deps;
    const ns = this.ns(r);
    if (r.kind.kind === 'Namespace') {
      if ((this.deps.protectedNamespaces ?? ['default']).includes(r.name!)) {
        throw new DroverError(`namespaces "${r.name}" is forbidden: this namespace may not be deleted`, { code: 403, reason: 'Forbidden' });
      }
      if (!(await store.get('Namespace', '', r.name!))) throw new NotFoundError(what(r.kind, r.name!));
      // Terminating first, so nothing new is created in it while its content is deleted.
      await store.patch('Namespace', '', r.name!, (cur) => ({ ...cur, status: { phase: 'Terminating' } }));
      // Cascade: everything in the namespace goes with it.
      for (const k of KINDS.filter((x) => x.namespaced)) {
        for (const o of (await store.list(k.kind, r.name)).items) {
          await store.delete(k.kind, r.name!, o.metadata.name).catch((err) => {
            if (!isNotFound(err)) throw err;
          });
        }
      }
    }
    const deleted = await store.delete(r.kind.kind, ns, r.name!);
    sendJson(res, 200, deleted);
  }

  /**
   * POST .../pods/NAME/exec {command: [...], container?, timeoutSeconds?} → {exitCode, output, timedOut}.
   * Not Kubernetes' streaming exec (no tty or stdin): one command, its combined output, its exit code.
   */
  private async podExec(req: IncomingMessage, res: ServerResponse, r: Route): Promise<void> {
    if (!this.deps.exec) throw new NotFoundError('exec');
    const body = (await readJson(req)) as { command?: unknown; container?: unknown; timeoutSeconds?: unknown } | undefined;
    const command = body?.command;
    if (!Array.isArray(command) || command.length === 0 || !command.every((c) => typeof c === 'string')) throw new BadRequestError('command: required, a non-empty list of strings');
    if (command.length > EXEC_ARGS_MAX) throw new BadRequestError(`command: at most ${EXEC_ARGS_MAX} arguments, got ${command.length}`);
    const bad = (command as string[]).findIndex((a) => a.length > EXEC_ARG_MAX || a.includes('\0'));
    if (bad >= 0) throw new BadRequestError(`command[${bad}]: longer than ${EXEC_ARG_MAX} characters or contains a NUL byte`);
    if (body?.container !== undefined && typeof body.container !== 'string') throw new BadRequestError('container: must be a string');
    const timeout = body?.timeoutSeconds ?? 30;
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 600) throw new BadRequestError('timeoutSeconds: an integer from 1 to 600');
    const result = await this.deps.exec({ namespace: this.ns(r), pod: r.name!, container: body?.container as string | undefined, command: command as string[], timeoutSeconds: timeout });
    sendJson(res, 200, result);
  }

  private async podLog(res: ServerResponse, r: Route, url: URL): Promise<void> {
    const tailRaw = url.searchParams.get('tailLines');
    const tail = tailRaw === null ? undefined : Number(tailRaw);
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new BadRequestError(`tailLines must be a non-negative integer, got "${tailRaw}"`);
    const text = await this.deps.logs({ namespace: this.ns(r), pod: r.name!, container: url.searchParams.get('container') ?? undefined, tail });
    sendText(res, 200, text);
  }
}
