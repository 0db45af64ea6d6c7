import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';

/**
 * For tests that run `drover server` as a process: calls to its API with the admin token of its data dir
 * (read at each call), and the small Deployment they scale.
 */
export interface ServerAt {
  apiUrl: string;
  dataDir: string;
}

export async function serverApi(s: ServerAt, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const token = (await readFile(join(s.dataDir, 'admin-token'), 'utf8')).trim();
  const r = await fetch(`${s.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

/** A Deployment of `replicas` pods with one container (localhost/busybox:latest), labelled app=NAME. */
export const busyboxDeployment = (name: string, replicas: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name },
  spec: { replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'localhost/busybox:latest' }] } } },
});

/**
 * The pid of the server process holding the etcd leader key (its identity is hostname_pid_random), read
 * at each call; the etcd client is closed when the test ends.
 */
export function leaderKeyPid(t: TestContext, endpoints: string[]): () => Promise<number | undefined> {
  const client = new Etcd3({ hosts: endpoints });
  t.after(() => client.close());
  return async () => {
    const v = await client.get('/drover/leader').string();
    return v ? Number(v.split('_').at(-2)) : undefined;
  };
}
