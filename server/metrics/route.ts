import type { ExtraRoute } from '../api/server.js';

/**
 * GET /metrics in Prometheus text format, for any API token that may read (role `view` or `admin`, as
 * server/auth/roles.ts ranks them): the figures say how big the fleet is and how busy, so a caller without
 * a token gets 401 and learns nothing. Prometheus scrapes it with `authorization: {credentials_file: ...}`
 * holding a view token.
 */
export function metricsRoute(metrics: { exposition(): Promise<{ contentType: string; text: string }> }): ExtraRoute {
  return {
    method: 'GET',
    path: '/metrics',
    access: 'view',
    async handle(_req, res) {
      const { contentType, text } = await metrics.exposition();
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
    },
  };
}
