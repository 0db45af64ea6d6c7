import assert from 'node:assert/strict';
import { connect, createServer, type Server } from 'node:net';
import { after, test } from 'node:test';
import { UserspaceForwarder, userspaceListeners } from '../../agent/network/userspace.js';
import type { DesiredService } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** A backend answering its name on every connection. */
async function backend(name: string): Promise<number> {
  const s = createServer((c) => c.end(name));
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

async function ask(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = connect({ host, port });
    c.on('data', (d) => (out += d));
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
}

test('listeners: cluster IP ports over all backends, nodePorts over local ones, UDP left out', () => {
  const l = userspaceListeners([{ namespace: 'd', name: 'w', clusterIP: '10.43.0.9', ports: [
    { protocol: 'TCP', port: 80, nodePort: 30080, backends: [{ ip: '10.88.0.2', port: 8080, local: true }, { ip: '192.168.1.2', port: 30080, local: false }] },
    { name: 'dns', protocol: 'UDP', port: 53, backends: [{ ip: '10.88.0.3', port: 53, local: true }] },
  ] }]);
  assert.deepEqual([...l.keys()], ['10.43.0.9:80', '0.0.0.0:30080']);
  assert.equal(l.get('0.0.0.0:30080')!.backends.length, 1);
});

test('the proxy takes backends in turn, skips a dead one, and follows a sync; close stops it', async () => {
  const one = await backend('one');
  const two = await backend('two');
  const dead = await backend('dead');
  servers.pop()!.close();
  // 127.0.0.2 is already local (all of 127/8 is): no address is added, nothing needs root.
  const ran: string[][] = [];
  const fwd = new UserspaceForwarder({ logger: silentLogger, run: async (cmd, args) => (ran.push([cmd, ...args]), '') });
  const svc = (ports: number[]): DesiredService[] => [{ namespace: 'd', name: 'w', clusterIP: '127.0.0.2', ports: [{ protocol: 'TCP', port: 38080, backends: ports.map((p) => ({ ip: '127.0.0.1', port: p, local: true })) }] }];
  await fwd.sync(svc([one, dead, two]));
  const seen = [];
  for (let i = 0; i < 6; i++) seen.push(await ask('127.0.0.2', 38080));
  assert.deepEqual(new Set(seen), new Set(['one', 'two']), 'the dead backend is skipped, every connection answered');
  await fwd.sync(svc([two]));
  assert.deepEqual([await ask('127.0.0.2', 38080), await ask('127.0.0.2', 38080)], ['two', 'two']);
  await fwd.close();
  await assert.rejects(ask('127.0.0.2', 38080), /ECONNREFUSED/);
  assert.deepEqual(ran, [], 'no ip command for an address already local');
});
