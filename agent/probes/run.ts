/**
 * Runs one probe once: exec through the runtime (`podman exec`), httpGet and tcpSocket from the agent
 * against the container's address (its own IP, or 127.0.0.1 with the host's network).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { Probe } from '../../src/api/pod.js';
import { errorMessage } from '../../src/util/errors.js';
import type { ContainerRuntime } from '../runtime/types.js';

export interface ProbeOutcome {
  ok: boolean;
  /** Why it failed (or what it saw), for the Unhealthy event. */
  message: string;
}

export interface ProbeEndpoint {
  runtime: ContainerRuntime;
  containerId: string;
  /** The container's ports, for named probe ports and the host-port fallback. */
  ports: Array<{ name?: string; containerPort: number; hostPort?: number }>;
  hostNetwork: boolean;
  /** Resolves the container's own IP (asked once, when a network probe first needs it). */
  ip: () => Promise<string | undefined>;
}

const OUTPUT_IN_MESSAGE = 300;

/**
 * Added to an exec probe's timeoutSeconds: `podman exec` itself takes a few hundred ms, and over a
 * second on a small or busy device, which must not count against the command (Kubernetes' default
 * timeout is 1 s). Network probes get no allowance.
 */
export const EXEC_OVERHEAD_MS = 2_000;

function trimOutput(s: string): string {
  const t = s.trim();
  return t.length > OUTPUT_IN_MESSAGE ? `${t.slice(0, OUTPUT_IN_MESSAGE)}…` : t;
}

/** A probe port (number, numeric string or the name of a container port) as a number. */
export function resolvePort(port: number | string, ports: ProbeEndpoint['ports']): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = ports.find((p) => p.name === port);
  if (!named) throw new Error(`port "${port}" is not a named port of the container`);
  return named.containerPort;
}

/**
 * Where to connect for a network probe: an explicit host as given; with the host's network,
 * 127.0.0.1; otherwise the container's IP, or, when it has none the agent can reach (rootless
 * networking), 127.0.0.1 on the port's hostPort if it publishes one.
 */
export async function probeAddress(e: ProbeEndpoint, port: number, host: string | undefined): Promise<{ host: string; port: number }> {
  if (host) return { host, port };
  if (e.hostNetwork) return { host: '127.0.0.1', port };
  const ip = await e.ip();
  if (ip) return { host: ip, port };
  const published = e.ports.find((p) => p.containerPort === port && p.hostPort);
  if (published) return { host: '127.0.0.1', port: published.hostPort! };
  throw new Error(`container has no IP address the agent can reach, and port ${port} is not published on the host`);
}

function hostForUrl(h: string): string {
  return h.includes(':') ? `[${h}]` : h;
}

async function httpGet(p: NonNullable<Probe['httpGet']>, e: ProbeEndpoint, timeoutMs: number): Promise<ProbeOutcome> {
  const { host, port } = await probeAddress(e, resolvePort(p.port, e.ports), p.host);
  const scheme = (p.scheme ?? 'HTTP').toLowerCase();
  const path = p.path ?? '/';
  const url = `${scheme}://${hostForUrl(host)}:${port}${path.startsWith('/') ? path : `/${path}`}`;
  const headers: Record<string, string> = { 'user-agent': 'drover-probe/1', accept: '*/*' };
  for (const h of p.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
  return new Promise((resolve) => {
    const req = (scheme === 'https' ? httpsRequest : httpRequest)(url, { method: 'GET', headers, timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
      const code = res.statusCode ?? 0;
      res.resume();
      res.on('error', () => {});
      // As the kubelet: 2xx and 3xx pass (redirects are not followed).
      resolve(code >= 200 && code < 400 ? { ok: true, message: `HTTP ${code}` } : { ok: false, message: `HTTP probe failed with statuscode: ${code}` });
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, message: `Get "${url}": ${errorMessage(err)}` }));
    req.end();
  });
}

async function tcpSocket(p: NonNullable<Probe['tcpSocket']>, e: ProbeEndpoint, timeoutMs: number): Promise<ProbeOutcome> {
  const { host, port } = await probeAddress(e, resolvePort(p.port, e.ports), p.host);
  const target = `${hostForUrl(host)}:${port}`;
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ ok: false, message: `dial tcp ${target}: i/o timeout` });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ok: true, message: `connected to ${target}` });
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, message: `dial tcp ${target}: ${errorMessage(err)}` });
    });
  });
}

/** Runs the probe once; never throws (a probe that cannot run has failed). */
export async function runProbe(p: Probe, e: ProbeEndpoint): Promise<ProbeOutcome> {
  const timeoutMs = Math.max(1, p.timeoutSeconds ?? 1) * 1000;
  try {
    if (p.exec) {
      const r = await e.runtime.exec(e.containerId, p.exec.command, timeoutMs + EXEC_OVERHEAD_MS);
      if (r.timedOut) return { ok: false, message: `command ${JSON.stringify(p.exec.command)} timed out after ${timeoutMs / 1000}s` };
      if (r.exitCode === 0) return { ok: true, message: trimOutput(r.output) };
      const out = trimOutput(r.output);
      return { ok: false, message: `command ${JSON.stringify(p.exec.command)} exited with ${r.exitCode}${out ? `: ${out}` : ''}` };
    }
    if (p.httpGet) return await httpGet(p.httpGet, e, timeoutMs);
    if (p.tcpSocket) return await tcpSocket(p.tcpSocket, e, timeoutMs);
    return { ok: false, message: 'probe has no handler (exec, httpGet or tcpSocket)' };
  } catch (err) {
    return { ok: false, message: errorMessage(err) };
  }
}
