/** One HTTPS request with node:https (a client certificate can be given, unlike fetch), the answer read whole. */
import { request, type Agent } from 'node:https';
import type { IncomingMessage } from 'node:http';

export interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

/** Who calls: a bearer token, a client certificate, both or neither. */
export interface Caller {
  token?: string;
  cert?: { cert: string; key: string };
}

export function httpsCall(
  ca: string,
  url: string,
  opts: { method?: string; who?: Caller; headers?: Record<string, string | number>; body?: Buffer; agent?: Agent | false } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.who?.token) headers.authorization = `Bearer ${opts.who.token}`;
    const req = request(url, { method: opts.method ?? 'GET', headers, ca, ...(opts.agent !== undefined ? { agent: opts.agent } : {}), ...(opts.who?.cert ?? {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        let json: unknown;
        try {
          json = JSON.parse(body.toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
