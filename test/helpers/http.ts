import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Test and benchmark plumbing with no server imports: a free port, an authenticated API client. */

/**
 * A port nobody listens on, for a server a test starts (or restarts) on a port it must know first.
 *
 * Why not listen(0) and release: the kernel hands that same port range out for every listen(0) and
 * outgoing connection, so a port picked and released can be taken by another test process before the
 * server binds it (ci18: EADDRINUSE in fault-link-outage). Ports below the ephemeral range are never
 * handed out by the kernel, so only another freePort() picking the same random port can collide.
 */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 20_000;
  const top = Math.max(floor + 1000, low - 1);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = floor + Math.floor(Math.random() * (top - floor));
    // Two picks in one process (an API and a broker port) must differ even before either binds.
    if (handedOut.has(port) || !(await bindable(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`freePort: no free port found in ${floor}-${top} after 50 tries`);
}

function ephemeralRange(): [number, number] {
  try {
    const [a, b] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (a > 0 && b > a) return [a, b];
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535];
}

/** Whether the port can be bound on every address (servers in the fault tests listen on 0.0.0.0). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
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
