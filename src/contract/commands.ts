/**
 * Operators' MQTT commands: `drover/v1/cmd/{verb}` with a JSON request, answered on a reply topic
 * (topics.ts) with `{transaction, ok: true, data}` or `{transaction, ok: false, error}`. The error's
 * code, reason and message are the HTTP API's for the call the command made; this file adds only the
 * ones of the MQTT edge itself (a request that is not JSON, an unknown verb, a field missing).
 */
import { z } from 'zod';

export const COMMAND_VERBS = [
  'get',
  'list',
  'apply',
  'delete',
  'scale',
  'rollout-status',
  'rollout-undo',
  'rollout-pause',
  'rollout-resume',
  'rollout-restart',
  'cordon',
  'uncordon',
  'drain',
  'logs',
  'fleet-status',
] as const;
export type CommandVerb = (typeof COMMAND_VERBS)[number];

export function isCommandVerb(v: string): v is CommandVerb {
  return (COMMAND_VERBS as readonly string[]).includes(v);
}

/** Largest request payload: a manifest of a few hundred objects fits; the API's own body limit is 3 MiB. */
export const MAX_COMMAND_BYTES = 1024 * 1024;
/** Largest reply: above it the reply is an error that says how to ask for less (limit, selectors, tailLines). */
export const MAX_REPLY_BYTES = 2 * 1024 * 1024;
export const MAX_TRANSACTION_LENGTH = 128;
/**
 * `apply`: most documents (or list items) one manifest may hold, and deepest nesting of flow collections
 * (`[`, `{`) in its text. The server parses the text on its only thread: these keep one request's parse short.
 */
export const MAX_MANIFEST_DOCUMENTS = 500;
export const MAX_MANIFEST_FLOW_DEPTH = 64;
/** `logs`: lines and bytes a reply carries at most (the last ones), and the lines when none are asked for. */
export const LOGS_MAX_LINES = 1000;
export const LOGS_DEFAULT_LINES = 100;
export const LOGS_MAX_BYTES = 256 * 1024;
/** `drain`: how long it waits for the evicted pods to go, by default and at most. */
export const DRAIN_DEFAULT_SECONDS = 60;
export const DRAIN_MAX_SECONDS = 300;

const text = (max: number) => z.string().min(1, 'must not be empty').max(max, `at most ${max} characters`);
const name = text(253);
const count = z.number().int('must be a whole number').nonnegative('must not be negative');

/** Fields every request may carry besides its verb's own. */
const envelope = {
  transaction: text(MAX_TRANSACTION_LENGTH),
  /** A reply topic of one's own (topics.isAllowedReplyTopic); else the MQTT 5 response topic, else the default. */
  replyTo: text(256).optional(),
  /** External broker only (it cannot say who published): the API token. Never logged. */
  token: text(512).optional(),
  /** External broker only: the name of the default reply topic (the Mosquitto username). */
  clientId: text(64).optional(),
};

const object = { kind: text(64), name, namespace: name.optional() };
const workload = { kind: text(64).default('deployment'), name, namespace: name.optional() };
const selectors = {
  labelSelector: text(1024).optional(),
  fieldSelector: text(1024).optional(),
  limit: count.min(1, 'must be at least 1').max(10_000, 'at most 10000').optional(),
  continue: text(4096).optional(),
  allNamespaces: z.boolean().optional(),
};
const manifestObject = z.record(z.string(), z.unknown());

export const COMMAND_ARGS = {
  get: z.strictObject({ ...envelope, kind: text(64), name: name.optional(), namespace: name.optional(), ...selectors }),
  list: z.strictObject({ ...envelope, kind: text(64), namespace: name.optional(), ...selectors }),
  /** `manifest`: YAML or JSON text (one or several documents), an object, or a list of objects. */
  apply: z.strictObject({ ...envelope, manifest: z.union([text(MAX_COMMAND_BYTES), manifestObject, z.array(manifestObject).min(1).max(MAX_MANIFEST_DOCUMENTS, `at most ${MAX_MANIFEST_DOCUMENTS} objects`)]), namespace: name.optional() }),
  delete: z.strictObject({ ...envelope, ...object }),
  scale: z.strictObject({ ...envelope, ...object, replicas: count, currentReplicas: count.optional() }),
  'rollout-status': z.strictObject({ ...envelope, ...workload }),
  'rollout-undo': z.strictObject({ ...envelope, ...workload, toRevision: count.min(1, 'must be at least 1').optional() }),
  'rollout-pause': z.strictObject({ ...envelope, ...workload }),
  'rollout-resume': z.strictObject({ ...envelope, ...workload }),
  'rollout-restart': z.strictObject({ ...envelope, ...workload }),
  cordon: z.strictObject({ ...envelope, node: name }),
  uncordon: z.strictObject({ ...envelope, node: name }),
  drain: z.strictObject({
    ...envelope,
    node: name,
    ignoreDaemonsets: z.boolean().optional(),
    force: z.boolean().optional(),
    deleteEmptydirData: z.boolean().optional(),
    timeoutSeconds: count.min(1, 'must be at least 1').max(DRAIN_MAX_SECONDS, `at most ${DRAIN_MAX_SECONDS}`).optional(),
  }),
  logs: z.strictObject({ ...envelope, pod: name, namespace: name.optional(), container: name.optional(), tailLines: count.max(LOGS_MAX_LINES, `at most ${LOGS_MAX_LINES}`).optional() }),
  'fleet-status': z.strictObject({ ...envelope, labelSelector: text(1024).optional(), site: text(253).optional(), state: text(64).optional() }),
} satisfies Record<CommandVerb, z.ZodType>;

export type CommandRequest<V extends CommandVerb> = z.infer<(typeof COMMAND_ARGS)[V]>;
/** A verb's own arguments: its request without the envelope (transaction, replyTo, token, clientId). */
export type CommandArgs<V extends CommandVerb> = Omit<CommandRequest<V>, 'transaction' | 'replyTo' | 'token' | 'clientId'>;

/** What a failed command says: the HTTP API's status code and reason, its message, and the field at fault if one is. */
export const commandError = z.strictObject({
  code: z.number().int(),
  reason: z.string(),
  message: z.string(),
  field: z.string().optional(),
});
export type CommandError = z.infer<typeof commandError>;

export const commandReply = z.union([
  z.strictObject({ transaction: z.string().nullable(), ok: z.literal(true), data: z.unknown() }),
  z.strictObject({ transaction: z.string().nullable(), ok: z.literal(false), error: commandError }),
]);
export type CommandReply = z.infer<typeof commandReply>;

/** A request that passed the contract: its verb, routing fields and arguments. */
export interface ParsedCommand {
  verb: CommandVerb;
  transaction: string;
  replyTo?: string;
  token?: string;
  clientId?: string;
  args: Record<string, unknown>;
}

/** A request refused by the contract, with what could be read of it to route the error reply. */
export interface RefusedCommand {
  transaction: string | null;
  replyTo?: string;
  clientId?: string;
  error: CommandError;
}

const refuse = (code: number, reason: string, message: string, field?: string): CommandError => ({ code, reason, message, ...(field !== undefined ? { field } : {}) });

/** A zod issue as `field: message`, the field as a dotted path (an unknown key names itself). */
function describeIssue(issue: z.core.$ZodIssue): { field: string; message: string } {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    return { field: path ? `${path}.${key}` : key, message: `unknown field (allowed: see the ${'`'}drover/v1/cmd${'`'} table in the README)` };
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) return { field: path, message: 'required' };
  return { field: path, message: issue.message };
}

/**
 * The request of `verb` (the topic's last level) from its payload, or why it is refused. Pure: no
 * I/O. Whatever could be read (transaction, replyTo, clientId) is kept for the error's reply.
 */
export function parseCommand(verb: string, payload: Buffer | string): { ok: true; command: ParsedCommand } | { ok: false; refused: RefusedCommand } {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_COMMAND_BYTES) {
    return { ok: false, refused: { transaction: null, error: refuse(413, 'RequestEntityTooLarge', `the request is ${size} bytes, more than ${MAX_COMMAND_BYTES}`) } };
  }
  let body: unknown;
  try {
    body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    return { ok: false, refused: { transaction: null, error: refuse(400, 'BadRequest', `the request is not valid JSON: ${(err as Error).message}`) } };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, refused: { transaction: null, error: refuse(400, 'BadRequest', `the request must be a JSON object, not ${Array.isArray(body) ? 'an array' : body === null ? 'null' : typeof body}`) } };
  }
  const raw = body as Record<string, unknown>;
  const str = (v: unknown, max: number) => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);
  const transaction = str(raw.transaction, MAX_TRANSACTION_LENGTH) ?? null;
  const route = { replyTo: str(raw.replyTo, 256), clientId: str(raw.clientId, 64) };
  const refused = (error: CommandError) => ({ ok: false as const, refused: { transaction, ...route, error } });
  if (!isCommandVerb(verb)) return refused(refuse(404, 'NotFound', `unknown command "${verb.slice(0, 64)}" (drover/v1/cmd/VERB with VERB one of: ${COMMAND_VERBS.join(', ')})`));
  const parsed = COMMAND_ARGS[verb].safeParse(raw);
  if (!parsed.success) {
    const first = describeIssue(parsed.error.issues[0]!);
    return refused(refuse(422, 'Invalid', `invalid ${verb} request: ${first.field ? `${first.field}: ` : ''}${first.message}`, first.field || undefined));
  }
  const { transaction: tx, replyTo, token, clientId, ...args } = parsed.data as Record<string, unknown> & { transaction: string; replyTo?: string; token?: string; clientId?: string };
  return { ok: true, command: { verb, transaction: tx, ...(replyTo ? { replyTo } : {}), ...(token ? { token } : {}), ...(clientId ? { clientId } : {}), args } };
}

/** The reply payload (JSON text). */
export function encodeReply(reply: CommandReply): string {
  return JSON.stringify(reply);
}
