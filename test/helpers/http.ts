import { createServer } from 'node:net';

/** Test and benchmark plumbing with no server imports: a free port, an authenticated API client. */

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(p));
    });
  });
}

export type ApiCall = (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any; text: string }>;

/**
 * Authenticated JSON requests against the API at `baseUrl`; `body` is the parsed JSON, when it is JSON.
 * Functions are read at each call: a server restarted on another port or with another token.
 */
export function apiClient(baseUrl: string | (() => string), token: string | (() => string)): ApiCall {
  const read = (v: string | (() => string)) => (typeof v === 'function' ? v() : v);
  return async (method, path, body) => {
    const res = await fetch(read(baseUrl) + path, {
      method,
      headers: { authorization: `Bearer ${read(token)}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  };
}
