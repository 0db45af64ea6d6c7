/**
 * HTTP routes of node identity, mounted on the API server as extra routes:
 * - GET  /cacerts                      public: the CA (the agent checks its hash against the join token)
 * - POST /v1/join                      public: join token as bearer, {node, csr} → certificate
 * - POST /v1/renew                     public: authenticated by the node's client certificate
 * - GET  /drover/v1/nodes/             view: each node's credential (state, serial, expiry)
 * - POST /drover/v1/nodes/NAME/approve admin
 * - POST /drover/v1/nodes/NAME/revoke  admin
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { BadRequestError, NotFoundError } from '../../src/util/errors.js';
import type { ExtraRoute } from '../api/server.js';
import { sendJson, sendText } from '../api/respond.js';
import type { NodeIdentity } from './service.js';

export const NODE_ADMIN_PREFIX = '/drover/v1/nodes/';
const PREFIX_SEGMENTS = 3;

function bearer(req: IncomingMessage): string | undefined {
  return /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
}

/** The client certificate the TLS handshake proved the key of (chain not required to be valid: renew and the image routes check it). */
export function peerCertificatePem(req: IncomingMessage): string | undefined {
  const sock = req.socket as Partial<TLSSocket>;
  if (typeof sock.getPeerCertificate !== 'function') return undefined;
  const raw = sock.getPeerCertificate()?.raw;
  if (!raw || raw.length === 0) return undefined;
  return new X509Certificate(raw).toString();
}

export function identityRoutes(identity: NodeIdentity): ExtraRoute[] {
  return [
    {
      method: 'GET',
      path: '/cacerts',
      access: 'public',
      handle: async (_req, res) => sendText(res, 200, identity.caCert),
    },
    {
      method: 'POST',
      path: '/v1/join',
      access: 'public',
      verb: 'node.join',
      handle: async (req, res, ctx) => {
        const a = await identity.join(bearer(req), () => ctx.body());
        ctx.identify({ node: a.node });
        sendJson(res, 200, a);
      },
    },
    {
      method: 'POST',
      path: '/v1/renew',
      access: 'public',
      verb: 'node.renew',
      handle: async (req, res, ctx) => {
        const a = await identity.renew(peerCertificatePem(req), () => ctx.body());
        ctx.identify({ node: a.node });
        sendJson(res, 200, a);
      },
    },
    {
      method: 'GET',
      path: NODE_ADMIN_PREFIX,
      access: 'view',
      handle: async (_req, res, ctx) => {
        const name = nodeSegment(ctx.segments, 'GET');
        if (!name) return sendJson(res, 200, { items: identity.list() });
        const rec = identity.list().find((n) => n.node === name);
        if (!rec) throw new NotFoundError(`node credential "${name}"`);
        sendJson(res, 200, rec);
      },
    },
    {
      method: 'POST',
      path: NODE_ADMIN_PREFIX,
      access: 'admin',
      verb: 'node.credential',
      handle: async (_req, res, ctx) => {
        const [name, verb, ...more] = ctx.segments.slice(PREFIX_SEGMENTS);
        if (!name || more.length || (verb !== 'approve' && verb !== 'revoke')) throw new BadRequestError(`expected POST ${NODE_ADMIN_PREFIX}NAME/approve or /revoke`);
        sendJson(res, 200, verb === 'approve' ? await identity.approve(name) : await identity.revoke(name));
      },
    },
  ];
}

/** Segments come decoded and checked (no dot segments, no escaped slashes) from the API server. */
function nodeSegment(segments: string[], method: string): string | undefined {
  const rest = segments.slice(PREFIX_SEGMENTS);
  if (rest.length > 1) throw new BadRequestError(`expected ${method} ${NODE_ADMIN_PREFIX}NAME`);
  return rest[0];
}
