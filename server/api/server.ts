import { EXEC_ARG_MAX, EXEC_ARGS_MAX } from '../../src/contract/payloads.js';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { inject, type InjectOptions } from 'light-my-request';
import { KINDS, kindInfo, type KindInfo } from '../../src/api/kinds.js';
import { versionInfo } from '../../src/version.js';
import type { ApiObject } from '../../src/api/meta.js';
import { assertMutable } from '../../src/api/immutability.js';
import { parseObject } from '../../src/api/validate.js';
import { countsAbove, MAX_REPLICAS } from '../../src/api/workloads.js';
import { AlreadyExistsError, BadRequestError, ConflictError, DroverError, ForbiddenError, NotFoundError, UnauthorizedError, ValidationError, errorMessage, isAlreadyExists, isConflict, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { FollowerLimit, followLog } from './log-follow.js';
import { assertPodSecurity, DEFAULT_POD_SECURITY, type PodSecurityPolicy } from '../admission/pod-security.js';
import type { NamespaceReader } from '../admission/store.js';
import type { AuditResource, AuditSink, AuditWho } from '../audit/log.js';
import { REDACTED_ANNOTATION, redactFor } from '../auth/redact.js';
import { authorize, hasRole, type Decision, type Verb } from '../auth/roles.js';
import { tokenRoutes } from '../auth/routes.js';
import { BOOTSTRAP_ADMIN_ID, maskTokens, type ApiIdentity, type TokenStore } from '../auth/tokens.js';
import type { Pod } from '../../src/api/pod.js';
import { isKind, type Store } from '../store/types.js';
import type { ApiRequestSink } from '../metrics/server-metrics.js';
import { discoveryDocument, type DiscoveryOptions } from './discovery.js';
import { isClientGo, kubernetesView } from './k8s-view.js';
import { openApiDocument } from './openapi.js';
import { paginate } from './paging.js';
import { applyPatch, parsePatchJson, patchTypeOf, unsupportedPatchType, type PatchType } from './patch.js';
import { deleteOptionsOf } from './delete-options.js';
import { SCALABLE_KINDS, scaleOf, withScale, withStatus } from './subresources.js';
import { fieldManagerOf, recordUpdate, requireFieldManager, serverSideApply } from './apply.js';
import { parseIncludeObject, tableVersion, toTable } from './table.js';
import { assertObjectNames, pathSegments } from './path.js';
import { MAX_BODY_BYTES, PayloadTooLargeError, readBody, readBodyText, readJson, sendError, sendJson, sendText, UnsupportedMediaTypeError } from './respond.js';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';

export interface LogsQuery {
  namespace: string;
  pod: string;
  container?: string;
  tail?: number;
  /** Kubernetes' PodLogOptions, as the agent applies them (src/contract/payloads.ts). */
  previous?: boolean;
  sinceSeconds?: number;
  sinceTime?: string;
  timestamps?: boolean;
  limitBytes?: number;
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
  /** A bearer token with the admin role (the bootstrap token); TokenStore accepts it too. */
  adminToken?: string;
  /** Join and API tokens with roles; mounts /drover/v1/tokens (admin only). */
  tokens?: TokenStore;
  /** Turns a join token ("<id>.<secret>") into what `drover token create` prints (the K10 form); identity if absent. */
  formatJoin?: (token: string) => string;
  /** HTTPS; a client certificate is asked for but optional, checked by the routes that want it. */
  tls?: { key: string; cert: string; ca: string };
  /** Routes outside the Kubernetes shape (node identity, ...), matched before the Kubernetes routes. */
  extraRoutes?: ExtraRoute[];
  /** Receives one record per mutating or refused call. */
  audit?: AuditSink;
  /** hostPath allow-list of the pod security switch (the switch itself is always on). */
  podSecurity?: PodSecurityPolicy;
  /** Reads a namespace's labels for the pod security check, read-only (default: a store read; see AdmissionOptions). */
  readNamespace?: NamespaceReader;
  /** Fetches a pod's container log from its node's agent. */
  logs(q: LogsQuery): Promise<string>;
  /** Runs a command in a pod's container on its node (no tty, no stdin); absent: exec not offered. */
  exec?(q: ExecQuery): Promise<{ exitCode: number; output: string; timedOut: boolean }>;
  ready(): boolean;
  /** Latest reported resource use, served under /apis/metrics.k8s.io/v1beta1. */
  metrics?: { nodeMetrics(): unknown; podMetrics(namespace?: string): unknown; refresh?(q: { nodes: boolean; namespace?: string; name?: string }): Promise<void> };
  /** Namespaces that cannot be deleted. */
  protectedNamespaces?: string[];
  /** Most replicas, completions or parallelism a workload may ask for (`--max-replicas`); MAX_REPLICAS if absent. */
  maxReplicas?: number;
  /** Told each request's duration, verb, resource and code when it ends (/metrics). */
  requestMetrics?: ApiRequestSink;
}

export interface ExtraRouteContext {
  /** The caller's API identity, if a valid bearer token came with the request (always set for 'view'/'admin' routes). */
  identity?: ApiIdentity;
  url: URL;
  /** The path split, each segment decoded and checked (no dot segments, no escaped slashes). */
  segments: string[];
  body(): Promise<unknown>;
  /** A 'public' route that proved a node's identity names it, so the audit record says who it was. */
  identify(who: { node: string }): void;
}

export interface ExtraRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Exact path, or a prefix when it ends with '/', e.g. '/drover/v1/nodes/'. */
  path: string;
  /**
   * 'public': no bearer token needed (the route authenticates itself: join token, client certificate);
   * 'view' / 'admin': the bearer token must have at least that role (403 otherwise).
   */
  access: 'public' | 'view' | 'admin';
  /** Audit verb for this route's calls, e.g. 'node.approve'; default "METHOD PATH". Every non-GET call is audited. */
  verb?: string;
  /**
   * Largest body ctx.body() accepts. 'public' routes read theirs before anyone is authenticated, so they
   * default to PUBLIC_MAX_BODY_BYTES and need a Content-Length (411 without, 413 above, before a byte is
   * kept); the others to MAX_BODY_BYTES.
   */
  maxBodyBytes?: number;
  handle(req: IncomingMessage, res: ServerResponse, ctx: ExtraRouteContext): Promise<void>;
}

/** The door and client of a request that did not come over HTTP (an MQTT command run through injectFetch). */
export interface InjectedVia {
  door: 'mqtt';
  clientId: string;
  /** The client's network address, for the audit record. */
  remote?: string;
}

/** What the audit record of one request says; filled in as the request is understood. */
interface RequestAudit {
  who: AuditWho & { via?: { door: 'mqtt'; clientId: string } };
  verb: string;
  resource: AuditResource;
  reason?: string;
  /** The object a Kubernetes-shaped request is about, for the details of an Invalid (422) Status. */
  about?: { kind: string; group?: string; name?: string };
  /**
   * What /metrics calls the resource: a kind's plural (with its subresource), an extra route's declared
   * path, or a fixed word. Never the request's own path or an object name, so the label stays bounded.
   */
  metricResource: string;
}

/** The verbs /metrics names as they are; anything else is named by its HTTP method. */
const METRIC_VERBS: ReadonlySet<string> = new Set(['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'logs', 'exec']);
const METRIC_METHODS: Readonly<Record<string, string>> = { GET: 'get', HEAD: 'head', POST: 'post', PUT: 'put', PATCH: 'patch', DELETE: 'delete', OPTIONS: 'options' };

function metricVerb(auditVerb: string, method: string): string {
  return METRIC_VERBS.has(auditVerb) ? auditVerb : METRIC_METHODS[method] ?? 'other';
}

type Authentication = { identity: ApiIdentity } | { refused: string; tokenId?: string };

interface Route {
  kind: KindInfo;
  namespace?: string;
  name?: string;
  sub?: string;
}

class NotAcceptableError extends DroverError {
  constructor(message: string) {
    super(message, { code: 406, reason: 'NotAcceptable' });
  }
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

/** A join or renew request is a CSR and a name, about 1 KiB: far below this. */
export const PUBLIC_MAX_BODY_BYTES = 64 * 1024;
/**
 * How long a client has to send its whole request (headers and body; a watch's or exec's answer may take
 * longer). Node's defaults (300 s, 60 s) let slow senders hold connections and buffers for minutes.
 */
export const REQUEST_TIMEOUT_MS = 60_000;
export const HEADERS_TIMEOUT_MS = 20_000;
/** How often a watch that allows bookmarks gets one (Kubernetes: about once a minute). */
export const WATCH_BOOKMARK_MS = 60_000;
/**
 * How long a PATCH or apply that names no resourceVersion keeps applying itself again to the latest object
 * when another write landed between its read and its write. Kubernetes' API server does the same (its
 * GuaranteedUpdate loop), so `kubectl patch/scale/apply` never see that 409 while controllers write the
 * object's status; each round one of the contending writers wins, so the loop ends. Five tries were not
 * enough under load (a Deployment's status written by its controller; 40 patches of one object at once).
 */
const PATCH_RETRY_MS = 30_000;

/**
 * Before a patch is tried again: reads see durable state only, and the write that beat this one may still be
 * on its way to disk; a read answered from memory would find the same old object in a loop of microtasks
 * that never lets that fsync complete. One turn of the event loop lets it land.
 */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Kinds with a status a client may write through /status (controllers' and agents' kinds). */
const STATUS_KINDS: ReadonlySet<string> = new Set(['Pod', 'Node', 'Namespace', 'Deployment', 'ReplicaSet', 'DaemonSet', 'Job', 'ResourceQuota', 'Service']);

class LengthRequiredError extends DroverError {
  constructor(message: string) {
    super(message, { code: 411, reason: 'LengthRequired' });
  }
}

const POD_TEMPLATE_KINDS: ReadonlySet<string> = new Set(['Pod', 'Deployment', 'ReplicaSet', 'DaemonSet', 'Job']);

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function isMutation(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD';
}

function what(kind: KindInfo, name: string): string {
  return `${kind.plural} "${name}"`;
}

/**
 * The HTTP API: Kubernetes-shaped paths and objects, validated with the same schemas as the CLI.
 * Every request except the health probes and 'public' extra routes carries a bearer token whose
 * role is checked by server/auth/roles.ts; mutating and refused calls go to the audit log.
 * Handlers are thin: the store enforces versions and durability.
 */
export class ApiServer {
  private server: Server | undefined;
  private readonly extraRoutes: ExtraRoute[];
  private readonly adminTokenHash: Buffer | undefined;
  private readonly podSecurity: PodSecurityPolicy;
  /** Requests made through injectFetch, and the door they came through (never set from anything a client sends). */
  private readonly injected = new WeakMap<IncomingMessage, InjectedVia>();
  /** Open `logs -f` per token. */
  private readonly followers = new FollowerLimit();
  /** The OpenAPI documents as sent, by path (built on first request: a few ms each). */
  private readonly openApiCache = new Map<string, string>();

  constructor(private readonly deps: ApiDeps) {
    this.extraRoutes = [...(deps.extraRoutes ?? []), ...(deps.tokens ? tokenRoutes({ tokens: deps.tokens, formatJoin: deps.formatJoin }) : [])];
    this.adminTokenHash = deps.adminToken ? sha256(deps.adminToken) : undefined;
    this.podSecurity = deps.podSecurity ?? DEFAULT_POD_SECURITY;
  }

  /** The one entry of every request, from the listener or injected (injectFetch). */
  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.handle(req, res).catch((err) => {
      this.deps.logger.error({ err: this.mask(errorMessage(err)), method: req.method, path: this.mask(req.url?.split('?')[0] ?? '') }, 'api handler failed');
      if (!res.headersSent) sendError(res, err);
      else res.end();
    });
  };

  /**
   * A fetch that runs each request through this server's own handler in process (no socket): the same
   * authentication by bearer token, roles, admission, validation, redaction and audit as over HTTP. The
   * audit record says which door and client it came through; only requests made here carry that mark
   * (a WeakMap on the request object), so no HTTP header can claim it.
   */
  injectFetch(via: InjectedVia): typeof fetch {
    const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
      this.injected.set(req, via);
      this.onRequest(req, res);
    };
    return (async (input: string | URL | Request, init: RequestInit = {}) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((v, k) => {
        headers[k] = v;
      });
      const answer = await inject(dispatch, {
        method: (init.method ?? 'GET') as InjectOptions['method'],
        url: url.pathname + url.search,
        headers,
        ...(typeof init.body === 'string' ? { payload: init.body } : {}),
        remoteAddress: via.remote ?? '127.0.0.1',
        ...(init.signal ? { signal: init.signal } : {}),
      });
      const out = new Headers();
      for (const [k, v] of Object.entries(answer.headers)) {
        if (Array.isArray(v)) for (const x of v) out.append(k, x);
        else if (v !== undefined) out.set(k, String(v));
      }
      const empty = answer.statusCode === 204 || answer.statusCode === 304;
      return new Response(empty ? null : new Uint8Array(answer.rawPayload), { status: answer.statusCode, headers: out });
    }) as typeof fetch;
  }

  async listen(host: string, port: number): Promise<{ url: string; port: number }> {
    const onRequest = this.onRequest;
    const tls = this.deps.tls;
    // requestCert without rejectUnauthorized: nodes renewing present their certificate, people with a token need none.
    this.server = tls ? createHttpsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: false }, onRequest) : createServer(onRequest);
    const server = this.server;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.headersTimeout = HEADERS_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    const p = typeof addr === 'object' && addr ? addr.port : port;
    const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return { url: `${tls ? 'https' : 'http'}://${h}:${p}`, port: p };
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Who the bearer token says the caller is, or why it does not count. Never logs or returns the token. */
  private authenticate(req: IncomingMessage): Authentication {
    const header = req.headers.authorization;
    if (header === undefined) return { refused: 'no bearer token' };
    const m = /^Bearer (\S+)$/.exec(header);
    if (!m) return { refused: 'the Authorization header is not "Bearer <token>"' };
    const token = m[1]!;
    if (this.deps.tokens) {
      const r = this.deps.tokens.checkApi(token);
      if ('identity' in r) return r;
      if (r.tokenId) return { refused: `token ${r.tokenId} is ${r.refused === 'wrong type' ? 'a join token, not an API token' : r.refused}`, tokenId: r.tokenId };
    }
    if (this.adminTokenHash && timingSafeEqual(sha256(token), this.adminTokenHash)) {
      return { identity: { kind: 'api', tokenId: BOOTSTRAP_ADMIN_ID, role: 'admin' } };
    }
    return { refused: 'unknown token' };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    if (url.pathname === '/healthz' || url.pathname === '/livez') return sendText(res, 200, 'ok');
    if (url.pathname === '/readyz') return this.deps.ready() ? sendText(res, 200, 'ok') : sendText(res, 503, 'not ready');
    const began = performance.now();
    const remote = req.socket.remoteAddress;
    const auth = this.authenticate(req);
    const via = this.injected.get(req);
    const audit: RequestAudit = {
      who: 'identity' in auth ? { kind: 'token', tokenId: auth.identity.tokenId, role: auth.identity.role, remote } : { kind: 'anonymous', remote, ...(auth.tokenId ? { tokenId: auth.tokenId } : {}) },
      verb: method,
      resource: { kind: 'unknown', path: url.pathname },
      metricResource: 'unknown',
    };
    if (via) audit.who.via = { door: via.door, clientId: via.clientId };
    res.once('close', () => {
      // A caller that hung up before the answer (an exec it gave up on) still made the call; 499 as nginx names it.
      if (!res.headersSent) audit.reason ??= 'the client closed the connection before the answer';
      const status = res.headersSent ? res.statusCode : 499;
      this.record(audit, method, status);
      this.deps.requestMetrics?.request(metricVerb(audit.verb, method), audit.metricResource, status, (performance.now() - began) / 1000);
    });
    try {
      await this.dispatch(req, res, url, method, auth, audit);
    } catch (err) {
      // A refused request (a bad path, a bad body, a missing right) is the client's problem, not the server's;
      // so is "busy, come back in N s" (the image transfer cap): flow control a fleet meets by the hundred.
      const refused = err instanceof DroverError && (err.code < 500 || (err.code === 503 && typeof (err as { retryAfterSeconds?: unknown }).retryAfterSeconds === 'number'));
      audit.reason = errorMessage(err);
      // Paths and messages can quote what the caller sent, a pasted token included.
      const fields = { err: this.mask(errorMessage(err)), method, path: this.mask(url.pathname) };
      if (!refused) this.deps.logger.warn(fields, 'api request failed');
      else this.deps.logger.debug(fields, 'api request refused');
      // kubectl words a 422 as Kubernetes only with the kind and name in the Status: `The Pod "x" is invalid: ...`.
      if (!res.headersSent) sendError(res, err, err instanceof DroverError && err.code === 422 ? audit.about : undefined);
      else res.end();
    }
  }

  /** Mutating calls, and every refusal for lack of identity or right, go to the audit log. */
  private record(a: RequestAudit, method: string, status: number): void {
    if (!this.deps.audit) return;
    if (!isMutation(method) && status !== 401 && status !== 403) return;
    const r = a.resource;
    const resource: AuditResource = { kind: r.kind, ...(r.namespace !== undefined ? { namespace: this.mask(r.namespace) } : {}), ...(r.name !== undefined ? { name: this.mask(r.name) } : {}), ...(r.sub !== undefined ? { sub: r.sub } : {}), ...(r.path !== undefined ? { path: this.mask(r.path) } : {}) };
    this.deps.audit.write({ who: a.who, verb: a.verb, resource, result: status, ...(status >= 400 && a.reason ? { reason: this.mask(a.reason) } : {}) });
  }

  /** Text that may quote the request (a path, an error message) with any token in it cut out, the bootstrap admin token included. */
  private mask(text: string): string {
    const masked = maskTokens(text);
    const admin = this.deps.tokens?.adminToken ?? this.deps.adminToken;
    return admin && masked.includes(admin) ? masked.split(admin).join('<admin-token>') : masked;
  }

  private requireIdentity(auth: Authentication): ApiIdentity {
    if ('identity' in auth) return auth.identity;
    throw new UnauthorizedError(`a valid bearer token is required: ${auth.refused}`);
  }

  private check(d: Decision): void {
    if (!d.allowed) throw new ForbiddenError(`forbidden: ${d.reason}`);
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, url: URL, method: string, auth: Authentication, audit: RequestAudit): Promise<void> {
    const extra = this.extraRoutes.find((r) => r.method === method && (r.path.endsWith('/') ? url.pathname.startsWith(r.path) : url.pathname === r.path));
    if (extra) {
      audit.verb = extra.verb ?? `${method} ${extra.path}`;
      audit.resource = { kind: 'route', path: url.pathname };
      audit.metricResource = extra.path;
      const segments = pathSegments(req.url ?? '/');
      let identity: ApiIdentity | undefined;
      if (extra.access !== 'public') {
        identity = this.requireIdentity(auth);
        this.check(hasRole(identity, extra.access, `${method} ${url.pathname}`));
      } else if ('identity' in auth) identity = auth.identity;
      return extra.handle(req, res, {
        identity,
        url,
        segments,
        body: () => this.readRouteBody(req, extra),
        identify: (who) => {
          audit.who = { kind: 'node', node: who.node, remote: req.socket.remoteAddress };
        },
      });
    }
    const metrics = /^\/apis\/metrics\.k8s\.io\/v1beta1\/(?:(nodes)|pods|namespaces\/[^/]+\/pods)(?:\/[^/]+)?$/.exec(url.pathname);
    if (metrics && method === 'GET') {
      const segs = pathSegments(req.url ?? '/');
      const nodes = metrics[1] !== undefined;
      // The namespace and name segments decoded and checked like any other (a bad escape is a 400, not a 500).
      const namespace = segs[3] === 'namespaces' ? segs[4] : undefined;
      const name = segs.length === (namespace !== undefined ? 7 : 5) ? segs.at(-1) : undefined;
      audit.verb = name ? 'get' : 'list';
      audit.resource = { kind: 'metrics', path: url.pathname };
      audit.metricResource = nodes ? 'nodes.metrics.k8s.io' : 'pods.metrics.k8s.io';
      this.check(authorize(this.requireIdentity(auth), 'list', { resource: 'metrics' }));
      if (!this.deps.metrics) throw new NotFoundError('metrics');
      // Agents measure only when asked: the nodes this read concerns are asked for fresh figures first.
      await this.deps.metrics.refresh?.({ nodes, namespace, name });
      const list = (nodes ? this.deps.metrics.nodeMetrics() : this.deps.metrics.podMetrics(namespace)) as { items: Array<{ metadata: { name: string } }> };
      if (!name) return sendJson(res, 200, list);
      // `kubectl top node NAME` / `top pod NAME`: one item of the list, as metrics-server serves it.
      const item = list.items.find((i) => i.metadata.name === name);
      if (!item) throw new NotFoundError(`${nodes ? 'nodemetrics' : 'podmetrics'}.metrics.k8s.io "${name}"`);
      return sendJson(res, 200, { kind: nodes ? 'NodeMetrics' : 'PodMetrics', apiVersion: 'metrics.k8s.io/v1beta1', ...item });
    }
    // Unauthenticated callers learn nothing about paths, not even which exist.
    const identity = this.requireIdentity(auth);
    if (method === 'GET' && url.pathname.startsWith('/openapi/')) {
      audit.verb = 'get';
      audit.resource = { kind: 'openapi', path: url.pathname };
      audit.metricResource = 'openapi';
      return this.sendOpenApi(req, res, url);
    }
    if (method === 'GET') {
      const doc = discoveryDocument(KINDS, pathSegments(req.url ?? '/'), req.headers.host ?? '', this.discoveryOptions());
      if (doc) {
        audit.verb = 'get';
        audit.resource = { kind: 'discovery', path: url.pathname };
        audit.metricResource = 'discovery';
        return sendJson(res, 200, doc);
      }
    }
    const r = route(pathSegments(req.url ?? '/'));
    if (!r) throw new NotFoundError(`the server could not find the requested resource (${url.pathname}):`);
    const verb = this.verbOf(r, method, url);
    audit.verb = verb ?? method;
    // Without a name (a create) kubectl would print `The Pod "" is invalid`: only named requests say which object.
    if (r.name) audit.about = { kind: r.kind.kind, ...(r.kind.groupVersion.includes('/') ? { group: r.kind.groupVersion.split('/')[0] } : {}), name: r.name };
    audit.resource = { kind: r.kind.plural, ...(r.kind.namespaced ? { namespace: this.ns(r) } : {}), ...(r.name ? { name: r.name } : {}), ...(r.sub ? { sub: r.sub } : {}) };
    // A subresource is named only when it is one the path offers (a verb was found): the segment is the client's.
    audit.metricResource = r.sub ? `${r.kind.plural}/${verb ? r.sub : 'other'}` : r.kind.plural;
    if (verb) this.check(authorize(identity, verb, { resource: r.sub ? `${r.kind.plural}/${r.sub}` : r.kind.plural, namespace: r.kind.namespaced ? this.ns(r) : undefined, name: r.name }));
    // Validation after authorization, as Kubernetes orders it: a refused caller learns nothing more.
    assertObjectNames({ namespace: r.kind.namespaced ? r.namespace : undefined, name: r.name });
    if (r.sub) {
      if (verb === 'logs') return await this.podLog(res, r, url, identity);
      if (verb === 'exec') return await this.podExec(req, res, r);
      if (verb && (r.sub === 'scale' || r.sub === 'status')) {
        if (method === 'PATCH') return await this.patch(req, res, r, identity);
        return await this.subresource(req, res, r, verb, identity);
      }
      throw new NotFoundError(`subresource ${r.sub} of ${r.kind.plural}`);
    }
    if (method === 'PATCH' && verb) {
      audit.verb = 'patch';
      return await this.patch(req, res, r, identity);
    }
    switch (verb) {
      case 'watch': return await this.watch(req, res, r, url, identity);
      case 'list': return await this.list(req, res, r, url, identity);
      case 'create': return await this.create(req, res, r, identity);
      case 'get': return await this.get(req, res, r, url, identity);
      case 'update': return await this.update(req, res, r, identity);
      case 'delete': return await this.remove(req, res, r, identity);
      default: throw new MethodNotAllowed(method, url.pathname);
    }
  }

  /** The body of an extra route's request, within that route's limit (see ExtraRoute.maxBodyBytes). */
  private async readRouteBody(req: IncomingMessage, route: ExtraRoute): Promise<unknown> {
    const limit = route.maxBodyBytes ?? (route.access === 'public' ? PUBLIC_MAX_BODY_BYTES : MAX_BODY_BYTES);
    if (limit < MAX_BODY_BYTES) {
      const raw = req.headers['content-length'];
      const declared = raw === undefined ? NaN : Number(raw);
      if (!Number.isFinite(declared) || declared > limit) {
        // Drained without being kept, so the answer reaches the client instead of a reset.
        req.on('error', () => undefined);
        req.resume();
        if (raw === undefined) throw new LengthRequiredError(`${route.path} needs a Content-Length (at most ${limit} bytes)`);
        throw new PayloadTooLargeError(`request body of ${raw} bytes is larger than ${limit} bytes for ${route.path}`);
      }
    }
    return readJson(req);
  }

  /** The authorization verb of a Kubernetes-shaped request; undefined for a method the path does not offer. */
  private verbOf(r: Route, method: string, url: URL): Verb | undefined {
    if (r.sub) {
      if (r.kind.kind === 'Pod' && r.sub === 'log' && method === 'GET') return 'logs';
      if (r.kind.kind === 'Pod' && r.sub === 'exec' && method === 'POST') return 'exec';
      if ((r.sub === 'scale' && SCALABLE_KINDS.has(r.kind.kind)) || r.sub === 'status') {
        // Kubernetes' verbs are get, update and patch; drover's roles know update (patch is a kind of update).
        if (method === 'GET') return 'get';
        if (method === 'PUT' || method === 'PATCH') return 'update';
      }
      return undefined;
    }
    const watching = ['1', 'true'].includes(url.searchParams.get('watch') ?? '');
    if (method === 'GET' && watching) return 'watch';
    if (!r.name) {
      if (method === 'GET') return 'list';
      return method === 'POST' ? 'create' : undefined;
    }
    // PATCH is authorized as an update (drover's roles have no separate patch verb); audited as 'patch'.
    return ({ GET: 'get', PUT: 'update', PATCH: 'update', DELETE: 'delete' } as const)[method as 'GET' | 'PUT' | 'PATCH' | 'DELETE'];
  }

  /**
   * GET /openapi/v2, /openapi/v3, /openapi/v3/api/v1, /openapi/v3/apis/GROUP/VERSION. Generated once per
   * path (the kind table does not change while the server runs). Swagger 2.0 is served as JSON only:
   * a client that accepts only protobuf (kubectl's v2 getter) gets a 406 and uses v3.
   */
  private sendOpenApi(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const segments = pathSegments(req.url ?? '/');
    const accept = req.headers.accept ?? '';
    if (segments[1] === 'v2' && accept !== '' && !/application\/json|\*\/\*/.test(accept)) {
      throw new NotAcceptableError(`/openapi/v2 is served as application/json only (asked for ${accept.slice(0, 100)})`);
    }
    const key = segments.join('/');
    let text = this.openApiCache.get(key);
    if (text === undefined) {
      const doc = openApiDocument(KINDS, segments, versionInfo().gitVersion);
      if (!doc) throw new NotFoundError(`the server could not find the requested resource (${url.pathname}):`);
      text = JSON.stringify(doc);
      this.openApiCache.set(key, text);
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** An object as this caller may see it (Secrets redacted for view tokens), in the shape its client decodes. */
  private shown<T extends ApiObject>(req: IncomingMessage, identity: ApiIdentity, o: T): T {
    const r = redactFor(identity.role, o) as T;
    return isClientGo(req.headers['user-agent']) ? kubernetesView(r) : r;
  }

  /** What discovery says this server serves beyond the kinds themselves. */
  private discoveryOptions(): DiscoveryOptions {
    return {
      metrics: Boolean(this.deps.metrics),
      subresources: {
        'pods/log': { verbs: ['get'] },
        ...Object.fromEntries(KINDS.filter((k) => SCALABLE_KINDS.has(k.kind)).map((k) => [`${k.plural}/scale`, { verbs: ['get', 'patch', 'update'], kind: 'Scale', group: 'autoscaling', version: 'v1' }])),
        ...Object.fromEntries(KINDS.filter((k) => STATUS_KINDS.has(k.kind)).map((k) => [`${k.plural}/status`, { verbs: ['get', 'patch', 'update'] }])),
        ...(this.deps.exec ? { 'pods/exec': { verbs: ['create', 'get'], kind: 'PodExecOptions' } } : {}),
      },
    };
  }

  private ns(r: Route): string {
    return r.kind.namespaced ? r.namespace ?? 'default' : '';
  }

  private async list(req: IncomingMessage, res: ServerResponse, r: Route, url: URL, identity: ApiIdentity): Promise<void> {
    const asTable = tableVersion(req.headers.accept);
    const include = parseIncludeObject(url.searchParams.get('includeObject'));
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const { items, revision } = await this.deps.store.list(r.kind.kind, r.kind.namespaced ? r.namespace : undefined);
    // Selectors first, then the page: a page holds `limit` matching objects, as in Kubernetes.
    const matching = items.filter((o) => matchesLabels(o, labels) && matchesFields(o, fields));
    const page = paginate(matching, { limit: url.searchParams.get('limit'), continue: url.searchParams.get('continue') }, revision);
    const metadata = { resourceVersion: String(revision), ...(page.continue ? { continue: page.continue, remainingItemCount: page.remainingItemCount } : {}) };
    const shown = page.items.map((o) => this.shown(req, identity, o));
    if (asTable) return sendJson(res, 200, toTable(r.kind, shown, { version: asTable, includeObject: include, listMeta: metadata }));
    sendJson(res, 200, { kind: `${r.kind.kind}List`, apiVersion: r.kind.groupVersion, metadata, items: shown });
  }

  /**
   * `?watch=1`: a stream of JSON lines `{type, object}`, as Kubernetes sends. Without a resourceVersion
   * (or with "0", or sendInitialEvents=true) the current objects come first as ADDED (what `get -w` shows),
   * then changes. A Table was asked for (kubectl get -w): each event's object is a one-row Table.
   * allowWatchBookmarks: a BOOKMARK now and then carries the latest revision, so a client that reconnects
   * resumes from there instead of listing again.
   */
  private async watch(req: IncomingMessage, res: ServerResponse, r: Route, url: URL, identity: ApiIdentity): Promise<void> {
    const labels = parseLabelSelector(url.searchParams.get('labelSelector'));
    const fields = parseFieldSelector(url.searchParams.get('fieldSelector'));
    const asTable = tableVersion(req.headers.accept);
    const include = parseIncludeObject(url.searchParams.get('includeObject'));
    const ns = r.kind.namespaced ? r.namespace : undefined;
    // A watch on one object's path (…/pods/web?watch=1) is the collection's watch narrowed to that name.
    const match = (o: ApiObject) => (!ns || o.metadata.namespace === ns) && (!r.name || o.metadata.name === r.name) && matchesLabels(o, labels) && matchesFields(o, fields);
    const rvParam = url.searchParams.get('resourceVersion');
    const initialEvents = url.searchParams.get('sendInitialEvents');
    const bookmarks = ['1', 'true'].includes(url.searchParams.get('allowWatchBookmarks') ?? '');
    let from: number;
    const initial: ApiObject[] = [];
    if (rvParam && rvParam !== '0' && initialEvents !== 'true') {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) throw new BadRequestError(`resourceVersion must be a number, got "${rvParam.slice(0, 64)}"`);
    } else {
      const list = await this.deps.store.list(r.kind.kind, ns);
      from = list.revision;
      initial.push(...list.items.filter(match));
    }
    const timeoutRaw = url.searchParams.get('timeoutSeconds');
    const timeout = timeoutRaw === null || timeoutRaw === '' ? 0 : Number(timeoutRaw);
    if (!Number.isInteger(timeout) || timeout < 0) throw new BadRequestError(`timeoutSeconds must be a whole number of seconds, got "${timeoutRaw!.slice(0, 64)}"`);
    let latest = from;
    const event = (type: string, o: ApiObject): string => {
      const shown = this.shown(req, identity, o);
      const object = asTable ? toTable(r.kind, [shown], { version: asTable, includeObject: include, listMeta: { resourceVersion: o.metadata.resourceVersion } }) : shown;
      return JSON.stringify({ type, object }) + '\n';
    };
    const bookmark = (annotations?: Record<string, string>): string =>
      JSON.stringify({ type: 'BOOKMARK', object: { kind: r.kind.kind, apiVersion: r.kind.groupVersion, metadata: { resourceVersion: String(latest), ...(annotations ? { annotations } : {}) } } }) + '\n';
    // Events that arrive before the head is written wait in order behind it.
    const pending: string[] = [];
    let started = false;
    const w = this.deps.store.watch(
      from,
      (e) => {
        latest = Math.max(latest, e.revision);
        if (!match(e.object)) return;
        const line = event(e.type, e.object);
        if (started) res.write(line);
        else pending.push(line);
      },
      // A watch the store ended by itself (etcd compacted its history behind it) ends the response: the client
      // lists again, as with a 410 at the start.
      { kinds: [r.kind.kind], onError: () => res.end() },
    );
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
    // A quiet collection must still look connected to the client.
    res.flushHeaders();
    for (const o of initial) res.write(event('ADDED', o));
    // What a client asking for sendInitialEvents waits for before it trusts its cache (the WatchList protocol).
    if (initialEvents === 'true' && bookmarks) res.write(bookmark({ 'k8s.io/initial-events-end': 'true' }));
    for (const line of pending.splice(0)) res.write(line);
    started = true;
    const ticker = bookmarks ? setInterval(() => res.write(bookmark()), WATCH_BOOKMARK_MS) : undefined;
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    req.on('close', () => {
      w.close();
      if (timer) clearTimeout(timer);
      if (ticker) clearInterval(ticker);
    });
  }

  private async get(req: IncomingMessage, res: ServerResponse, r: Route, url: URL, identity: ApiIdentity): Promise<void> {
    const asTable = tableVersion(req.headers.accept);
    const include = parseIncludeObject(url.searchParams.get('includeObject'));
    const obj = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
    if (!obj) throw new NotFoundError(what(r.kind, r.name!));
    const shown = this.shown(req, identity, obj);
    if (asTable) return sendJson(res, 200, toTable(r.kind, [shown], { version: asTable, includeObject: include, listMeta: { resourceVersion: obj.metadata.resourceVersion } }));
    sendJson(res, 200, shown);
  }

  /** Validates a body for this route: the kind and namespace in the body must agree with the path. */
  private async parseBody(req: IncomingMessage, r: Route, identity: ApiIdentity): Promise<{ obj: ApiObject; warnings: string[] }> {
    if (/^application\/vnd\.kubernetes\.protobuf/i.test(req.headers['content-type'] ?? '')) {
      req.on('error', () => undefined);
      req.resume();
      // kubectl's typed clients (create deployment|configmap|secret|namespace, run) send protobuf and do not fall back.
      throw new UnsupportedMediaTypeError(
        'drover reads JSON and YAML, not protobuf (kubectl create <kind> NAME sends protobuf): use `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`, or kubectl create -f FILE',
      );
    }
    return this.admit(await readJson(req), r, identity);
  }

  /** Validates and admits an object about to be written (a body as sent, or a patched object). */
  private async admit(body: unknown, r: Route, identity: ApiIdentity): Promise<{ obj: ApiObject; warnings: string[] }> {
    // A write of /status is the one that keeps the status it carries.
    const { object, kind, warnings } = parseObject(body, { keepStatus: r.sub === 'status' });
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
    if (POD_TEMPLATE_KINDS.has(object.kind)) {
      const ns = this.ns(r);
      const nsObj = await (this.deps.readNamespace ? this.deps.readNamespace(ns) : this.deps.store.get('Namespace', '', ns));
      // On the body as sent: hostPID or a privileged securityContext are stripped by parseObject (drover
      // ignores them), but asking for them where they are not allowed is refused, not quietly dropped.
      assertPodSecurity({ kind: object.kind, plural: r.kind.plural, name: object.metadata.name, namespace: ns, body, namespaceLabels: nsObj?.metadata.labels, role: identity.role, policy: this.podSecurity });
    }
    if (object.kind === 'Secret' && object.metadata.annotations?.[REDACTED_ANNOTATION] !== undefined) {
      // A Secret read by a view token and written back would replace every value with asterisks.
      throw new ValidationError([{ field: `metadata.annotations.${REDACTED_ANNOTATION}`, message: 'this Secret was read with its values hidden; writing it back would store the masks as values (remove the annotation and give the real values)' }], 'invalid Secret');
    }
    // The schema caps counts at MAX_REPLICAS; a server may set a lower cap for its fleet.
    const tooMany = countsAbove(object, this.deps.maxReplicas ?? MAX_REPLICAS);
    if (tooMany.length > 0) throw new ValidationError(tooMany, `invalid ${object.kind}`);
    return { obj: object, warnings };
  }

  private warningHeader(warnings: string[]): Record<string, string[]> {
    return warnings.length ? { warning: warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {};
  }

  private async create(req: IncomingMessage, res: ServerResponse, r: Route, identity: ApiIdentity): Promise<void> {
    const { obj, warnings } = await this.parseBody(req, r, identity);
    if (obj.kind === 'Pod') obj.status = { phase: 'Pending' };
    if (obj.kind === 'Namespace') obj.status = { phase: 'Active' };
    delete obj.metadata.resourceVersion;
    const created = await this.storeCreate(req, recordUpdate(undefined, obj, this.fieldManager(req), new Date()));
    sendJson(res, 201, this.shown(req, identity, created), this.warningHeader(warnings));
  }

  /** `?fieldManager`, or Kubernetes' default from the User-Agent ("kubectl"): who the managed fields name. */
  private fieldManager(req: IncomingMessage): string {
    return fieldManagerOf(new URL(req.url ?? '/', 'http://localhost').searchParams, req.headers['user-agent']);
  }

  /**
   * `?dryRun=All` (kubectl and drover --dry-run=server): everything a write does (authorization,
   * validation, admission, immutability) except storing it. Any other value is a 400: a dry run that
   * is not understood must not write.
   */
  private isDryRun(req: IncomingMessage): boolean {
    const values = new URL(req.url ?? '/', 'http://localhost').searchParams.getAll('dryRun');
    if (values.length === 0) return false;
    if (values.some((v) => v !== 'All')) throw new BadRequestError(`dryRun: only "All" is supported, got "${values.join(',').slice(0, 64)}"`);
    return true;
  }

  /** store.create, or under dryRun what it would have stored (uid, creationTimestamp filled; a name taken is still a 409). */
  private async storeCreate<T extends ApiObject>(req: IncomingMessage, obj: T): Promise<T> {
    if (!this.isDryRun(req)) return this.deps.store.create(obj);
    if (await this.deps.store.get(obj.kind, obj.metadata.namespace ?? '', obj.metadata.name)) {
      throw new AlreadyExistsError(`${kindInfo(obj.kind).plural} "${obj.metadata.name}"`);
    }
    return { ...obj, metadata: { ...obj.metadata, uid: randomUUID(), creationTimestamp: new Date().toISOString(), generation: 1 } };
  }

  /** store.update, or under dryRun the object as it would be stored (a stale resourceVersion is still a 409). */
  private async storeUpdate<T extends ApiObject>(req: IncomingMessage, obj: T): Promise<T> {
    if (!this.isDryRun(req)) return this.deps.store.update(obj);
    const cur = await this.deps.store.get(obj.kind, obj.metadata.namespace ?? '', obj.metadata.name);
    if (!cur) throw new NotFoundError(`${kindInfo(obj.kind).plural} "${obj.metadata.name}"`);
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== cur.metadata.resourceVersion) throw new ConflictError(`${kindInfo(obj.kind).plural} "${obj.metadata.name}"`, rv, String(cur.metadata.resourceVersion));
    return { ...obj, metadata: { ...obj.metadata, resourceVersion: cur.metadata.resourceVersion } };
  }

  private async update(req: IncomingMessage, res: ServerResponse, r: Route, identity: ApiIdentity): Promise<void> {
    const { obj, warnings } = await this.parseBody(req, r, identity);
    const cur = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
    if (!cur) throw new NotFoundError(what(r.kind, r.name!));
    const updated = await this.storeUpdate(req, recordUpdate(cur, this.userWrite(cur, obj), this.fieldManager(req), new Date()));
    sendJson(res, 200, this.shown(req, identity, updated), this.warningHeader(warnings));
  }

  /**
   * A user's new version of `cur` (PUT or PATCH of the object itself): status belongs to the system
   * (agents, scheduler), so only spec and metadata change; a bound pod stays on its node.
   */
  private userWrite(cur: ApiObject, obj: ApiObject): ApiObject {
    obj.status = cur.status;
    if (isKind(obj, 'Pod') && isKind(cur, 'Pod')) {
      if (!obj.spec.nodeName) obj.spec.nodeName = cur.spec.nodeName;
      else if (cur.spec.nodeName && obj.spec.nodeName !== cur.spec.nodeName) {
        throw new ValidationError([{ field: 'spec.nodeName', message: `pod is bound to ${cur.spec.nodeName}; a bound pod cannot move (delete and re-create it)` }]);
      }
    }
    // Fields Kubernetes keeps immutable (most of a pod's spec, selectors): 422 in its words, nothing stored.
    assertMutable(cur, obj);
    return obj;
  }

  /**
   * PATCH of an object or its /status or /scale: JSON patch, JSON merge patch or strategic merge patch
   * (server/api/patch.ts) applied to the stored object, then validated and admitted as a PUT of the
   * result would be. Written with the revision it was computed from; when another write landed in
   * between, computed again from the new one (as Kubernetes does), unless the patch itself named a
   * resourceVersion (then that write's 409 stands).
   */
  private async patch(req: IncomingMessage, res: ServerResponse, r: Route, identity: ApiIdentity): Promise<void> {
    const contentType = req.headers['content-type'];
    const type = patchTypeOf(contentType);
    if (type === undefined) {
      req.on('error', () => undefined);
      req.resume();
      throw unsupportedPatchType(contentType);
    }
    if (type === 'apply') return await this.apply(req, res, r, identity);
    const manager = this.fieldManager(req);
    const body = parsePatchJson(await readBodyText(req));
    const namedVersion = type !== 'json' && typeof (body as { metadata?: { resourceVersion?: unknown } }).metadata?.resourceVersion === 'string';
    const giveUpAt = performance.now() + PATCH_RETRY_MS;
    for (;;) {
      const cur = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
      if (!cur) throw new NotFoundError(what(r.kind, r.name!));
      const next = this.patched(cur, body, type, r);
      const { obj, warnings } = await this.admit(next.object, r, identity);
      const toWrite = recordUpdate(cur, this.subresourceWrite(cur, obj, r), manager, new Date(), r.sub === 'status' || r.sub === 'scale' ? r.sub : undefined);
      if (!namedVersion || toWrite.metadata.resourceVersion === undefined) toWrite.metadata.resourceVersion = cur.metadata.resourceVersion;
      try {
        const updated = await this.storeUpdate(req, toWrite);
        return sendJson(res, 200, r.sub === 'scale' ? scaleOf(updated) : this.shown(req, identity, updated), this.warningHeader(warnings));
      } catch (err) {
        if (!isConflict(err) || namedVersion || performance.now() > giveUpAt) throw err;
        await nextTurn();
      }
    }
  }

  /**
   * PATCH application/apply-patch+yaml: server-side apply (server/api/apply.ts), `?fieldManager=` required,
   * `?force=true` takes fields other managers own (409 naming them otherwise); creates the object when it
   * does not exist (201). Applied again on the new object when another write landed in between.
   */
  private async apply(req: IncomingMessage, res: ServerResponse, r: Route, identity: ApiIdentity): Promise<void> {
    if (r.sub) throw new BadRequestError(`server-side apply of ${r.kind.plural}/${r.sub} is not supported (apply the object itself)`);
    const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
    const fieldManager = requireFieldManager(query);
    const forceRaw = query.get('force');
    if (forceRaw !== null && forceRaw !== 'true' && forceRaw !== 'false') throw new BadRequestError(`force: must be true or false, got "${forceRaw.slice(0, 32)}"`);
    const text = await readBodyText(req);
    const giveUpAt = performance.now() + PATCH_RETRY_MS;
    for (;;) {
      const cur = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
      const next = serverSideApply(cur, text, { fieldManager, force: forceRaw === 'true', kind: r.kind.kind, now: new Date() });
      const { obj, warnings } = await this.admit(next, r, identity);
      try {
        if (!cur) {
          if (obj.kind === 'Pod') obj.status = { phase: 'Pending' };
          if (obj.kind === 'Namespace') obj.status = { phase: 'Active' };
          delete obj.metadata.resourceVersion;
          return sendJson(res, 201, this.shown(req, identity, await this.storeCreate(req, obj)), this.warningHeader(warnings));
        }
        const toWrite = this.userWrite(cur, obj);
        toWrite.metadata.resourceVersion = cur.metadata.resourceVersion;
        return sendJson(res, 200, this.shown(req, identity, await this.storeUpdate(req, toWrite)), this.warningHeader(warnings));
      } catch (err) {
        if (!(isConflict(err) || isAlreadyExists(err)) || performance.now() > giveUpAt) throw err;
        await nextTurn();
      }
    }
  }

  /** What a write through the object, its /status or its /scale stores: /scale changes spec.replicas only, status kept. */
  private subresourceWrite(cur: ApiObject, obj: ApiObject, r: Route): ApiObject {
    if (r.sub === 'status') return obj;
    if (r.sub === 'scale') {
      obj.status = cur.status;
      return obj;
    }
    return this.userWrite(cur, obj);
  }

  /** The object after a patch of it, of its status, or of its scale. */
  private patched(cur: ApiObject, body: unknown, type: PatchType, r: Route): { object: ApiObject } {
    if (r.sub === 'scale') return { object: withScale(cur, applyPatch(scaleOf(cur), body, type, 'Scale')) };
    if (r.sub === 'status') return { object: withStatus(cur, applyPatch(cur, body, type, cur.kind)) };
    return { object: applyPatch(cur, body, type, cur.kind) };
  }

  /** GET and PUT of /scale and /status. */
  private async subresource(req: IncomingMessage, res: ServerResponse, r: Route, verb: Verb, identity: ApiIdentity): Promise<void> {
    const cur = await this.deps.store.get(r.kind.kind, this.ns(r), r.name!);
    if (!cur) throw new NotFoundError(what(r.kind, r.name!));
    if (verb === 'get') return sendJson(res, 200, r.sub === 'scale' ? scaleOf(cur) : this.shown(req, identity, cur));
    const body = await readJson(req);
    const next = r.sub === 'scale' ? withScale(cur, body) : withStatus(cur, body);
    const { obj, warnings } = await this.admit(next, r, identity);
    obj.metadata.resourceVersion ??= cur.metadata.resourceVersion;
    const sub = r.sub === 'status' || r.sub === 'scale' ? r.sub : undefined;
    const updated = await this.storeUpdate(req, recordUpdate(cur, this.subresourceWrite(cur, obj, r), this.fieldManager(req), new Date(), sub));
    sendJson(res, 200, r.sub === 'scale' ? scaleOf(updated) : this.shown(req, identity, updated), this.warningHeader(warnings));
  }

  private async remove(req: IncomingMessage, res: ServerResponse, r: Route, identity: ApiIdentity): Promise<void> {
    const { store } = this.deps;
    const ns = this.ns(r);
    const options = deleteOptionsOf(await readBody(req), req.headers['content-type']);
    if (options.preconditions) {
      const cur = await store.get(r.kind.kind, ns, r.name!);
      if (!cur) throw new NotFoundError(what(r.kind, r.name!));
      const p = options.preconditions;
      if (p.uid !== undefined && p.uid !== cur.metadata.uid) throw new ConflictError(`${what(r.kind, r.name!)} (precondition uid ${p.uid})`, p.uid, String(cur.metadata.uid));
      if (p.resourceVersion !== undefined && p.resourceVersion !== cur.metadata.resourceVersion) throw new ConflictError(what(r.kind, r.name!), p.resourceVersion, String(cur.metadata.resourceVersion));
    }
    if (this.isDryRun(req) || options.dryRun) {
      if (r.kind.kind === 'Namespace' && (this.deps.protectedNamespaces ?? ['default']).includes(r.name!)) {
        throw new ForbiddenError(`namespaces "${r.name}" is forbidden: this namespace may not be deleted`);
      }
      const cur = await store.get(r.kind.kind, ns, r.name!);
      if (!cur) throw new NotFoundError(what(r.kind, r.name!));
      return sendJson(res, 200, this.shown(req, identity, cur));
    }
    if (r.kind.kind === 'Namespace') {
      if ((this.deps.protectedNamespaces ?? ['default']).includes(r.name!)) {
        throw new ForbiddenError(`namespaces "${r.name}" is forbidden: this namespace may not be deleted`);
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
    sendJson(res, 200, this.shown(req, identity, deleted));
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

  private async podLog(res: ServerResponse, r: Route, url: URL, identity: ApiIdentity): Promise<void> {
    const q = url.searchParams;
    const tail = optionalCount(q, 'tailLines', 0);
    const sinceSeconds = optionalCount(q, 'sinceSeconds', 1);
    const sinceTime = q.get('sinceTime') ?? undefined;
    if (sinceTime !== undefined && !RFC3339.test(sinceTime)) throw new BadRequestError(`sinceTime must be an RFC 3339 time such as 2024-05-01T10:00:00Z, got "${sinceTime}"`);
    if (sinceSeconds !== undefined && sinceTime !== undefined) throw new BadRequestError('at most one of `sinceTime` or `sinceSeconds` may be specified');
    const base: LogsQuery = {
      namespace: this.ns(r),
      pod: r.name!,
      container: q.get('container') ?? undefined,
      tail,
      previous: optionalBool(q, 'previous'),
      sinceSeconds,
      sinceTime,
      timestamps: optionalBool(q, 'timestamps'),
      limitBytes: optionalCount(q, 'limitBytes', 1),
    };
    // A previous run does not grow, and a byte limit ends the answer: both are answered once, as Kubernetes does.
    if (!optionalBool(q, 'follow') || base.previous || base.limitBytes !== undefined) {
      sendText(res, 200, await this.deps.logs(base));
      return;
    }
    await this.followPodLog(res, base, identity);
  }

  /** kubectl logs -f: the log, then new lines every second until the pod ends, is deleted, or the client leaves. */
  private async followPodLog(res: ServerResponse, base: LogsQuery, identity: ApiIdentity): Promise<void> {
    const pod = await this.deps.store.get('Pod', base.namespace, base.pod);
    if (!pod) throw new NotFoundError(`pods "${base.pod}" not found in namespace "${base.namespace}"`);
    // Each follow asks the pod's node once a second for as long as it lasts: bounded per token.
    const release = this.followers.acquire(`token ${identity.tokenId}`);
    try {
      await this.followPodLogHeld(res, base, pod);
    } finally {
      release();
    }
  }

  private async followPodLogHeld(res: ServerResponse, base: LogsQuery, pod: Pod): Promise<void> {
    let closed = false;
    let wake: (() => void) | undefined;
    res.once('close', () => {
      closed = true;
      wake?.();
    });
    let started = false;
    await followLog({
      timestamps: Boolean(base.timestamps),
      // Only the first read is the client's window (tail, since); later ones start at the last line sent.
      fetch: ({ first, sinceTime }) =>
        this.deps.logs(first ? { ...base, timestamps: true } : { namespace: base.namespace, pod: base.pod, container: base.container, sinceTime, timestamps: true }),
      podState: async () => {
        const cur = await this.deps.store.get('Pod', base.namespace, base.pod);
        // Deleted, or replaced by another pod of the same name: this log has ended.
        if (!cur || cur.metadata.uid !== pod.metadata.uid) return 'gone';
        const phase = cur.status?.phase;
        return phase === 'Succeeded' || phase === 'Failed' ? 'ended' : 'running';
      },
      write: (chunk) => {
        if (!started) {
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' });
          started = true;
        }
        res.write(chunk);
      },
      sleep: (ms) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, ms);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        }),
      closed: () => closed,
      onFetchError: (err) => this.deps.logger.debug({ pod: `${base.namespace}/${base.pod}`, err: errorMessage(err) }, 'log follow: read failed; trying again'),
    });
    if (!started) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end();
  }
}

/** An RFC 3339 time (seconds, optional fraction, Z or offset), as PodLogOptions.sinceTime. */
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/;

/** A query parameter holding a whole number of at least `min`; absent → undefined. */
function optionalCount(q: URLSearchParams, name: string, min: number): number | undefined {
  const raw = q.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min) throw new BadRequestError(`${name} must be ${min === 0 ? 'a non-negative' : 'a positive'} integer, got "${raw}"`);
  return n;
}

/** A boolean query parameter as Go's ParseBool reads it; absent or false → undefined. */
function optionalBool(q: URLSearchParams, name: string): true | undefined {
  const raw = q.get(name);
  if (raw === null) return undefined;
  if (['true', '1', 't', 'T', 'TRUE', 'True'].includes(raw)) return true;
  if (['false', '0', 'f', 'F', 'FALSE', 'False', ''].includes(raw)) return undefined;
  throw new BadRequestError(`${name} must be true or false, got "${raw}"`);
}
