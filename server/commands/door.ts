/**
 * The MQTT door: operators' commands in, replies out. A thin edge: it reads the request (the contract,
 * src/contract/commands.ts), picks the reply topic, bounds the work, and runs the verb over an ApiClient
 * whose requests go through the HTTP API's own handler (ApiServer.injectFetch). So a command meets the
 * same authentication, roles, admission, validation, redaction and audit as the HTTP call it mirrors.
 */
import { ApiClient } from '../../src/cli/client.js';
import { encodeReply, MAX_REPLY_BYTES, parseCommand, type CommandError, type CommandReply, type ParsedCommand } from '../../src/contract/commands.js';
import { DELIVERY, isAllowedReplyTopic, isOperatorClientId, replyNameOf, topics } from '../../src/contract/topics.js';
import { DroverError, errorMessage, ForbiddenError, UnauthorizedError, type FieldCause } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { InjectedVia } from '../api/server.js';
import { authorize } from '../auth/roles.js';
import { maskTokens, type ApiCheck } from '../auth/tokens.js';
import { PREAUTHORIZED, READ_ONLY_VERBS, VERBS, type Preauthorization } from './verbs.js';

/** A command as the embedded broker (with the publisher's proven identity) or the server's link (external broker) heard it. */

/** Replies up to this size are sent at QoS 1 (kept for a session that is briefly away); larger ones at QoS 0. */
export const QUEUED_REPLY_MAX_BYTES = 64 * 1024;
export interface IncomingCommand {
  verb: string;
  payload: Buffer;
  /** Published (embedded) or delivered (external: from the broker's store) with the retain flag. */
  retain: boolean;
  /** Embedded broker: who published it. Absent over an external broker, where the request carries its token. */
  operator?: { clientId: string; tokenId: string; token: string; remote?: string; mayUseReplyName(name: string): boolean };
  /** MQTT 5 (external broker): where the requester wants the reply, and what to echo with it. */
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface CommandDoorDeps {
  api: { injectFetch(via: InjectedVia): typeof fetch };
  /**
   * The API's token table (TokenStore): checks a token and its role before costly work (see PREAUTHORIZED),
   * keys the per-token limits by a proven token id, and names the bootstrap admin token to cut from logs.
   * Absent: every check is left to the API, and limits are keyed by the token as given.
   */
  tokens?: { checkApi(token: string): ApiCheck; readonly adminToken: string };
  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean; correlationData?: Buffer }): Promise<void>;
  logger: Logger;
  limits?: Partial<CommandLimits>;
}

export interface CommandLimits {
  /** Commands of one client (running and waiting) at a time; more get a 429 reply. One client's run in order. */
  perClient: number;
  /** Commands of one token (running and waiting, over all its client ids); more get a 429 reply. */
  perToken: number;
  /** Commands of one token running at once: the others' commands get the remaining slots, in turn. */
  runningPerToken: number;
  /** Commands running at once over all clients (each holds API calls and memory). */
  running: number;
  /** Commands running and waiting over all clients; more get a 429 reply. A last resort: perToken bounds each token. */
  queued: number;
  /** Longest one API call of a command may take. */
  requestTimeoutMs: number;
}

export const DEFAULT_COMMAND_LIMITS: CommandLimits = { perClient: 16, perToken: 16, runningPerToken: 2, running: 8, queued: 256, requestTimeoutMs: 60_000 };

/** The base URL of in-process requests: never dialled, injectFetch serves them. */
const IN_PROCESS = 'http://drover.in-process';

const failure = (code: number, reason: string, message: string, field?: string): CommandError => ({ code, reason, message, ...(field ? { field } : {}) });

/** The API's status for an answer the CLI rewrote (a 401 gets the CLI's "check DROVER_TOKEN" text). */
interface ApiStatus {
  code: number;
  reason?: string;
  message?: string;
}

/**
 * An error as the reply states it: the HTTP API's code, reason and message (CliError carries them from
 * the API's answer), the field of a validation error. Errors the CLI functions raise before any call
 * (a bad manifest) are 422 with causes, else 400.
 */
export function toCommandError(err: unknown, lastApiError?: ApiStatus): CommandError {
  if (!(err instanceof DroverError)) return failure(500, 'InternalError', 'internal error (see the server log)');
  const causes = (err as { causes?: FieldCause[] }).causes ?? [];
  const field = causes.find((c) => c.field)?.field;
  if (err.code === 401 && lastApiError?.code === 401 && lastApiError.message) return failure(401, lastApiError.reason ?? 'Unauthorized', lastApiError.message);
  if (err.code >= 100) return failure(err.code, err.reason, err.message, field);
  if (err.reason === 'Timeout') return failure(504, 'Timeout', err.message);
  if (err.reason === 'Unreachable') return failure(503, 'Unavailable', err.message);
  return causes.length ? failure(422, 'Invalid', err.message, field) : failure(400, 'BadRequest', err.message);
}

/** Why a token is refused, in the API's words (ApiServer.authenticate). */
function refusalOf(r: Exclude<ApiCheck, { identity: unknown }>): string {
  return r.tokenId ? `token ${r.tokenId} is ${r.refused === 'wrong type' ? 'a join token, not an API token' : r.refused}` : 'unknown token';
}

/** Which field to make smaller when a reply is too large. */
const SHRINK_FIELD: Record<string, string> = { get: 'limit', list: 'limit', logs: 'tailLines' };

interface Route {
  topic: string;
  correlationData?: Buffer;
}

/** Where a command waits: its client's line (answers in order) and its token's share of the running slots. */
interface QueueKeys {
  client: string;
  token: string;
}

/**
 * Bounded FIFO per client, bounded commands per token, and a cap on the commands running over all
 * clients. A free running slot goes to the next token in turn (round robin over tokens with a command
 * waiting, each below runningPerToken), so a token flooding the door delays its own commands, not others'.
 */
class CommandQueue {
  private readonly clients = new Map<string, { size: number; tail: Promise<void> }>();
  private readonly tokens = new Map<string, { size: number; running: number; waiting: Array<() => void> }>();
  /** Tokens with a command waiting for a running slot, in turn order. */
  private readonly turns: string[] = [];
  private running = 0;
  private total = 0;

  constructor(private readonly limits: CommandLimits) {}

  /** Which limit a command of `keys` would pass now, in words for its 429 reply; undefined when none. */
  full(keys: QueueKeys): string | undefined {
    if ((this.clients.get(keys.client)?.size ?? 0) >= this.limits.perClient) return `at most ${this.limits.perClient} for one client`;
    if ((this.tokens.get(keys.token)?.size ?? 0) >= this.limits.perToken) return `at most ${this.limits.perToken} for one token, over all its client ids`;
    if (this.total >= this.limits.queued) return `at most ${this.limits.queued} in all`;
    return undefined;
  }

  /** Undefined when the client, its token or the door is at its limit; else `run` is queued behind the client's earlier ones. */
  offer(keys: QueueKeys, run: () => Promise<void>): Promise<void> | undefined {
    if (this.full(keys)) return undefined;
    const c = this.clients.get(keys.client) ?? { size: 0, tail: Promise.resolve() };
    const t = this.tokens.get(keys.token) ?? { size: 0, running: 0, waiting: [] };
    c.size++;
    t.size++;
    this.total++;
    this.clients.set(keys.client, c);
    this.tokens.set(keys.token, t);
    const done = c.tail.then(async () => {
      await this.acquire(keys.token);
      try {
        await run();
      } finally {
        this.release(keys.token);
        this.total--;
        if (--c.size === 0) this.clients.delete(keys.client);
        if (--t.size === 0) this.tokens.delete(keys.token);
      }
    });
    c.tail = done;
    return done;
  }

  private acquire(token: string): Promise<void> {
    return new Promise((resolve) => {
      this.tokens.get(token)!.waiting.push(resolve);
      if (!this.turns.includes(token)) this.turns.push(token);
      this.schedule();
    });
  }

  private release(token: string): void {
    this.tokens.get(token)!.running--;
    this.running--;
    this.schedule();
  }

  /** Hands free running slots to waiting commands, one token at a time in turn. */
  private schedule(): void {
    let i = 0;
    while (i < this.turns.length && this.running < this.limits.running) {
      const key = this.turns[i]!;
      const t = this.tokens.get(key)!;
      if (t.running >= this.limits.runningPerToken) {
        i++;
        continue;
      }
      const start = t.waiting.shift()!;
      t.running++;
      this.running++;
      this.turns.splice(i, 1);
      if (t.waiting.length) this.turns.push(key);
      start();
    }
  }
}

export class CommandDoor {
  private readonly limits: CommandLimits;
  private readonly queue: CommandQueue;
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly deps: CommandDoorDeps) {
    this.limits = { ...DEFAULT_COMMAND_LIMITS, ...deps.limits };
    this.queue = new CommandQueue(this.limits);
  }

  /** Takes one command; never throws, never waits (the work is queued), every request gets a reply or a log line. */
  handle(c: IncomingCommand): void {
    try {
      this.accept(c);
    } catch (err) {
      this.deps.logger.error({ verb: this.mask(c.verb.slice(0, 64)), err: this.mask(errorMessage(err)) }, 'mqtt command not handled');
    }
  }

  private accept(c: IncomingCommand): void {
    const { logger } = this.deps;
    if (c.retain && !c.operator) {
      // An external broker keeps a retained command and hands it to every new subscriber (the server, at
      // each reconnect), token and all: it is refused below like any retained command, and cleared here.
      if (c.payload.length) this.deps.publish(topics.command(c.verb), '', { qos: 1, retain: true }).catch((err) => logger.warn({ err: errorMessage(err) }, 'clearing a retained command failed'));
      else return; // our own clearing, coming back
    }
    const parsed = parseCommand(c.verb, c.payload);
    const transaction = parsed.ok ? parsed.command.transaction : parsed.refused.transaction;
    const declaredClientId = parsed.ok ? parsed.command.clientId : parsed.refused.clientId;
    // External broker: the name of the default reply topic is what the request says (Mosquitto's ACL decides who reads it).
    const clientId = c.operator?.clientId ?? (declaredClientId && isOperatorClientId(declaredClientId) ? declaredClientId : undefined);
    const mayUseReplyName = c.operator?.mayUseReplyName ?? (() => true);
    const fallback: Route | undefined = clientId ? { topic: topics.commandResponse(c.verb, clientId) } : undefined;
    const replyTo = parsed.ok ? parsed.command.replyTo : parsed.refused.replyTo;
    const token = c.operator?.token ?? (parsed.ok ? parsed.command.token : undefined);
    // One client's requests are answered in the order sent, refusals included: a refusal waits behind the
    // commands before it (unless the queue is full). Over an external broker, where the publisher is not
    // known, requests answered to one reply name (drover/v1/cmd/+/response/NAME/...) are one client's.
    // A token's commands share its limits whatever client ids they come from (a refusal without a
    // token counts against its client's line only).
    const keyOf = (route: Route | undefined, tokenId?: string): QueueKeys | undefined => {
      const client = c.operator ? `client:${c.operator.clientId}` : route ? `reply:${replyNameOf(route.topic) ?? route.topic}` : undefined;
      if (!client) return undefined;
      const id = tokenId ?? c.operator?.tokenId;
      return { client, token: id ? `token:${id}` : client };
    };
    // The reply is sent in the background: accept() returns at once, and reply() logs its own failures.
    const fail = (route: Route | undefined, e: CommandError): void => {
      const send = () => this.reply(c.verb, clientId, route, { transaction, ok: false, error: e }, true);
      const keys = keyOf(route);
      if (!keys || !this.track(this.queue.offer(keys, send))) void send();
    };

    const wanted = replyTo !== undefined ? { topic: replyTo, field: 'replyTo' } : c.responseTopic !== undefined ? { topic: c.responseTopic, field: 'response topic' } : undefined;
    if (wanted && !isAllowedReplyTopic(wanted.topic, mayUseReplyName)) {
      return fail(fallback, failure(403, 'Forbidden', `${wanted.field}: "${wanted.topic.slice(0, 256)}" is not a reply topic of yours (drover/v1/cmd/VERB/response/${clientId ?? 'CLIENT_ID'}[/...])`, wanted.field === 'replyTo' ? 'replyTo' : undefined));
    }
    const route: Route | undefined = wanted ? { topic: wanted.topic, ...(c.correlationData ? { correlationData: c.correlationData } : {}) } : fallback;
    if (!route) {
      logger.warn({ verb: this.mask(c.verb.slice(0, 64)), transaction: transaction && this.mask(transaction) }, 'mqtt command with no reply topic (external broker: give replyTo, an MQTT 5 response topic, or clientId) ignored');
      return;
    }
    if (c.retain) return fail(route, failure(400, 'BadRequest', 'retain: a command must not be published with the retain flag (the broker would hand it to every new subscriber); nothing was stored or run', 'retain'));
    if (!parsed.ok) return fail(route, parsed.refused.error);
    if (this.closed) return fail(route, failure(503, 'ShuttingDown', 'the server is shutting down'));
    const cmd = parsed.command;
    if (!token) return fail(route, failure(401, 'Unauthorized', 'token: required over an external broker (it cannot say who published); give your API token in the request', 'token'));
    // External broker: the token is checked before it takes a place in the queue, so a made-up token
    // costs nothing and a real one's commands count against its own limits, not another's.
    let tokenId: string | undefined;
    if (!c.operator) {
      const check = this.deps.tokens?.checkApi(token);
      if (check && !('identity' in check)) return fail(route, failure(401, 'Unauthorized', `a valid bearer token is required: ${refusalOf(check)}`, 'token'));
      tokenId = check ? check.identity.tokenId : `unchecked:${token}`;
    }
    const keys = keyOf(route, tokenId)!;
    const via: InjectedVia = { door: 'mqtt', clientId: clientId ?? '-', ...(c.operator?.remote ? { remote: c.operator.remote } : {}) };
    const full = this.queue.full(keys);
    if (full || !this.track(this.queue.offer(keys, () => this.run(cmd, token, via, route)))) {
      void this.reply(c.verb, clientId, route, { transaction, ok: false, error: failure(429, 'TooManyRequests', `too many commands in flight (${full ?? 'queue full'}); wait for their replies`) }, true);
    }
  }

  /** Keeps a queued job's promise until it settles (close() waits for them); false when nothing was queued. */
  private track(job: Promise<void> | undefined): boolean {
    if (!job) return false;
    this.inFlight.add(job);
    void job.finally(() => this.inFlight.delete(job));
    return true;
  }

  private async run(cmd: ParsedCommand, token: string, via: InjectedVia, route: Route): Promise<void> {
    const started = Date.now();
    let lastApiError: ApiStatus | undefined;
    const inject = this.deps.api.injectFetch(via);
    // Remembers the API's own answer to a refused call: the CLI client rewrites a 401's message for people at a terminal.
    const fetchFn = (async (input: string | URL | Request, init?: RequestInit) => {
      const res = await inject(input, init);
      if (res.status === 401) {
        const body = (await res.clone().json().catch(() => undefined)) as { message?: unknown; reason?: unknown } | undefined;
        lastApiError = { code: 401, ...(typeof body?.message === 'string' ? { message: body.message } : {}), ...(typeof body?.reason === 'string' ? { reason: body.reason } : {}) };
      }
      return res;
    }) as typeof fetch;
    const client = new ApiClient({ server: IN_PROCESS, token, fetch: fetchFn, timeoutMs: this.limits.requestTimeoutMs });
    let reply: CommandReply;
    try {
      this.preauthorize(cmd, token);
      const data = await (VERBS[cmd.verb] as (c: ApiClient, a: Record<string, unknown>) => Promise<unknown>)(client, cmd.args);
      reply = { transaction: cmd.transaction, ok: true, data: data ?? null };
    } catch (err) {
      if (!(err instanceof DroverError)) this.deps.logger.error({ verb: cmd.verb, err: this.mask(errorMessage(err)) }, 'mqtt command failed');
      reply = { transaction: cmd.transaction, ok: false, error: toCommandError(err, lastApiError) };
    }
    if (reply.ok && Buffer.byteLength(encodeReply(reply)) > MAX_REPLY_BYTES) {
      const field = SHRINK_FIELD[cmd.verb];
      reply = { transaction: cmd.transaction, ok: false, error: failure(413, 'ReplyTooLarge', `the reply is larger than ${MAX_REPLY_BYTES} bytes${field ? `: ask for less (${field}${field === 'limit' ? ' and continue, or a labelSelector' : ''})` : ''}`, field) };
    }
    this.deps.logger[reply.ok && READ_ONLY_VERBS.has(cmd.verb) ? 'debug' : 'info'](
      { verb: cmd.verb, clientId: this.mask(via.clientId), transaction: this.mask(cmd.transaction), result: reply.ok ? 200 : reply.error.code, ms: Date.now() - started },
      'mqtt command',
    );
    await this.reply(cmd.verb, via.clientId, route, reply);
  }

  private async reply(verb: string, clientId: string | undefined, route: Route | undefined, r: CommandReply, refused?: boolean): Promise<void> {
    const { logger } = this.deps;
    // The reason and field only: a message may quote the request (a JSON error quotes its text, a token included).
    if (refused && !r.ok) logger.info({ verb: this.mask(verb.slice(0, 64)), clientId: clientId && this.mask(clientId), code: r.error.code, reason: r.error.reason, field: r.error.field }, 'mqtt command refused');
    if (!route) {
      logger.warn({ verb: this.mask(verb.slice(0, 64)) }, 'mqtt command refused, and no reply topic to say so');
      return;
    }
    try {
      const payload = encodeReply(r);
      // A broker keeps QoS 1 messages for a persistent session that is away, for as long as it stays away:
      // large replies go at QoS 0, so a token cannot park megabytes of them in the server's memory.
      const qos = Buffer.byteLength(payload) > QUEUED_REPLY_MAX_BYTES ? 0 : DELIVERY.commandReply.qos;
      await this.deps.publish(route.topic, payload, { ...DELIVERY.commandReply, qos, ...(route.correlationData ? { correlationData: route.correlationData } : {}) });
    } catch (err) {
      logger.warn({ verb: this.mask(verb.slice(0, 64)), clientId: clientId && this.mask(clientId), err: this.mask(errorMessage(err)) }, 'mqtt command reply not sent');
    }
  }

  /**
   * For a verb with costly work before its first API call (PREAUTHORIZED): the token and the right
   * checked first, by the API's rule and with its words (401/403), so a refused caller never makes the
   * server parse. The API checks again on each call; this only moves the refusal before the work.
   */
  private preauthorize(cmd: ParsedCommand, token: string): void {
    const need = (PREAUTHORIZED[cmd.verb] as ((a: Record<string, unknown>) => Preauthorization) | undefined)?.(cmd.args);
    if (!need || !this.deps.tokens) return;
    const check = this.deps.tokens.checkApi(token);
    if (!('identity' in check)) throw new UnauthorizedError(`a valid bearer token is required: ${refusalOf(check)}`);
    const d = authorize(check.identity, need.verb, need.resource);
    if (!d.allowed) throw new ForbiddenError(`forbidden: ${d.reason}`);
  }

  /** Text for a log line that may hold what a client sent: tokens cut out, the bootstrap admin token included (as ApiServer masks). */
  private mask(text: string): string {
    const masked = maskTokens(text);
    const admin = this.deps.tokens?.adminToken;
    return admin && masked.includes(admin) ? masked.split(admin).join('<admin-token>') : masked;
  }

  /** New commands get a 503 reply; those running are given a moment to answer (a drain may take minutes: not waited for). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}
