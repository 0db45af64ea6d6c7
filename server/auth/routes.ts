/**
 * Token management over HTTP, admin only (mounted by ApiServer when it has a TokenStore):
 * - GET    /drover/v1/tokens        the tokens, never their secrets
 * - POST   /drover/v1/tokens        {type: 'join', ttlSeconds?, uses?, labels?, description?}
 *                                   or {type: 'api', role, ttlSeconds?, description?} → the token, once
 * - DELETE /drover/v1/tokens/ID     revoke
 */
import { BadRequestError, NotFoundError, ValidationError, type FieldCause } from '../../src/util/errors.js';
import type { ExtraRoute } from '../api/server.js';
import { sendJson } from '../api/respond.js';
import type { Role, TokenStore } from './tokens.js';

export const TOKENS_PATH = '/drover/v1/tokens';
const PREFIX_SEGMENTS = 3;

export interface CreateTokenRequest {
  type: 'join' | 'api';
  role?: Role;
  ttlSeconds?: number;
  uses?: number;
  labels?: Record<string, string>;
  description?: string;
}

/** The answer to a create: the only time the token is shown. */
export interface CreatedToken {
  id: string;
  type: 'join' | 'api';
  role?: Role;
  expiresAt?: string;
  /** For a join token, what an agent is given (the K10 form: it also pins the server's CA). */
  token: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Shape checks of a create body; value checks (ranges, label syntax) are TokenStore's. */
export function parseCreateToken(body: unknown): CreateTokenRequest {
  if (!isRecord(body)) throw new BadRequestError('the body must be a JSON object');
  const causes: FieldCause[] = [];
  const known = new Set(['type', 'role', 'ttlSeconds', 'uses', 'labels', 'description']);
  for (const k of Object.keys(body)) if (!known.has(k)) causes.push({ field: k, message: 'unknown field' });
  const type = body.type ?? (body.role !== undefined ? 'api' : 'join');
  if (type !== 'join' && type !== 'api') causes.push({ field: 'type', message: `must be "join" or "api", got ${JSON.stringify(type)}` });
  for (const k of ['ttlSeconds', 'uses'] as const) if (body[k] !== undefined && typeof body[k] !== 'number') causes.push({ field: k, message: 'must be a number' });
  if (body.description !== undefined && typeof body.description !== 'string') causes.push({ field: 'description', message: 'must be a string' });
  if (body.labels !== undefined && (!isRecord(body.labels) || !Object.values(body.labels).every((v) => typeof v === 'string'))) {
    causes.push({ field: 'labels', message: 'must be a map of strings' });
  }
  if (type === 'api') {
    if (body.role === undefined) causes.push({ field: 'role', message: 'required for an API token (admin or view)' });
    if (body.uses !== undefined) causes.push({ field: 'uses', message: 'only join tokens have a number of uses' });
    if (body.labels !== undefined) causes.push({ field: 'labels', message: 'only join tokens carry node labels' });
  } else if (body.role !== undefined) causes.push({ field: 'role', message: 'only API tokens have a role' });
  if (causes.length) throw new ValidationError(causes, 'invalid token request');
  return body as unknown as CreateTokenRequest;
}

export function tokenRoutes(deps: { tokens: TokenStore; formatJoin?: (token: string) => string }): ExtraRoute[] {
  const { tokens } = deps;
  const formatJoin = deps.formatJoin ?? ((t: string) => t);
  return [
    {
      method: 'GET',
      path: TOKENS_PATH,
      access: 'admin',
      handle: async (_req, res) => sendJson(res, 200, { items: tokens.list() }),
    },
    {
      method: 'POST',
      path: TOKENS_PATH,
      access: 'admin',
      verb: 'token.create',
      handle: async (_req, res, ctx) => {
        const r = parseCreateToken(await ctx.body());
        const created = r.type === 'join'
          ? await tokens.createJoin({ ttlSeconds: r.ttlSeconds, uses: r.uses, labels: r.labels, description: r.description })
          : await tokens.createApi({ role: r.role!, ttlSeconds: r.ttlSeconds, description: r.description });
        const info = tokens.list().find((t) => t.id === created.id);
        const out: CreatedToken = {
          id: created.id,
          type: r.type,
          ...(r.type === 'api' ? { role: r.role } : {}),
          ...(info?.expiresAt ? { expiresAt: info.expiresAt } : {}),
          token: r.type === 'join' ? formatJoin(created.token) : created.token,
        };
        sendJson(res, 201, out, { 'cache-control': 'no-store' });
      },
    },
    {
      method: 'DELETE',
      path: `${TOKENS_PATH}/`,
      access: 'admin',
      verb: 'token.revoke',
      handle: async (_req, res, ctx) => {
        const rest = ctx.segments.slice(PREFIX_SEGMENTS);
        if (rest.length !== 1) throw new BadRequestError(`expected DELETE ${TOKENS_PATH}/ID`);
        // `token revoke` given the whole token: only its id part is used (and echoed).
        const id = rest[0]!.split('.')[0]!;
        if (!(await tokens.revoke(id))) throw new NotFoundError(`token "${id}"`);
        sendJson(res, 200, { id, revoked: true });
      },
    },
  ];
}
