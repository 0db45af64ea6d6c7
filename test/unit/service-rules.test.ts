import assert from 'node:assert/strict';
import { test } from 'node:test';
import { droverChains, planCleanup, planRules } from '../../agent/network/rules.js';
import type { DesiredService } from '../../src/contract/payloads.js';

const web = (backends: DesiredService['ports'][number]['backends'], nodePort?: number): DesiredService => ({
  namespace: 'default', name: 'web', clusterIP: '10.43.0.10',
  ports: [{ name: 'http', protocol: 'TCP', port: 80, ...(nodePort ? { nodePort } : {}), backends }],
});

const lines = (s: string) => s.split('\n');

test('ClusterIP:port is spread evenly over every backend; the nodePort only over local ones', () => {
  const p = planRules([web([{ ip: '10.88.0.5', port: 8080, local: true }, { ip: '10.88.0.6', port: 8080, local: true }, { ip: '192.168.1.2', port: 30080, local: false }], 30080)]);
  const dnat = lines(p.restore).filter((l) => l.includes('DNAT'));
  const svc = dnat.filter((l) => l.startsWith('-A DROVER-SVC-'));
  assert.deepEqual(svc.map((l) => /--probability (\S+)/.exec(l)?.[1] ?? 'rest'), ['0.33333', '0.50000', 'rest']);
  assert.deepEqual(svc.map((l) => l.split('--to-destination ')[1]), ['10.88.0.5:8080', '10.88.0.6:8080', '192.168.1.2:30080']);
  const np = dnat.filter((l) => l.startsWith('-A DROVER-NP-'));
  assert.deepEqual(np.map((l) => l.split('--to-destination ')[1]), ['10.88.0.5:8080', '10.88.0.6:8080'], 'a remote node is not forwarded to again (no loops)');
  assert.ok(lines(p.restore).includes('-A DROVER-SERVICES -d 10.43.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web:http" -j ' + p.chains.nat[3]));
  assert.ok(p.chains.nat.every((c) => c.length <= 28), 'iptables chain names are at most 28 characters');
});

test('no ready backend: the port is rejected at once, not left hanging; a nodePort without local backends is not forwarded', () => {
  const p = planRules([web([], 30080)]);
  assert.ok(lines(p.restore).some((l) => /^-A DROVER-FILTER -d 10\.43\.0\.10\/32 -p tcp -m tcp --dport 80 .* -j REJECT$/.test(l)));
  assert.ok(!p.restore.includes('DNAT --to'));
  assert.ok(!p.restore.includes('--dport 30080'));
});

test('stale per-port chains are flushed and deleted in the same restore; chain names are stable', () => {
  const a = planRules([web([{ ip: '10.88.0.5', port: 8080, local: true }])]);
  const b = planRules([web([{ ip: '10.88.0.6', port: 8080, local: true }])], { nat: [...a.chains.nat, 'DROVER-SVC-GONE'] });
  assert.deepEqual(a.chains, b.chains);
  assert.ok(b.restore.includes(':DROVER-SVC-GONE - [0:0]') && b.restore.includes('-X DROVER-SVC-GONE'));
  assert.ok(!b.restore.includes(`-X ${a.chains.nat[3]}`), 'a chain still in use is kept');
  assert.equal(planRules([]).restore.includes('DROVER-SVC-'), false);
});

test('a comment cannot break out of its quotes', () => {
  const p = planRules([{ ...web([{ ip: '10.88.0.5', port: 8080, local: true }]), name: 'x" -j ACCEPT "' }]);
  assert.ok(!p.restore.includes('-j ACCEPT "'));
});

test('chains are found in iptables -S and iptables-save listings; cleanup deletes each', () => {
  assert.deepEqual(droverChains('-P INPUT ACCEPT\n-N DROVER-SERVICES\n-N NETAVARK-X\n:DROVER-SVC-AB - [0:0]\n'), ['DROVER-SERVICES', 'DROVER-SVC-AB']);
  assert.equal(planCleanup({ nat: ['DROVER-SERVICES'], filter: [] }), '*nat\n:DROVER-SERVICES - [0:0]\n-X DROVER-SERVICES\nCOMMIT\n');
});

test('service names for a pod: <svc>.<ns>.svc and .svc.cluster.local for all, the short name in its own namespace', async () => {
  const { serviceHosts, addHostArgs } = await import('../../agent/network/hosts.js');
  const hosts = serviceHosts([{ ...web([]) }, { ...web([]), namespace: 'prod', name: 'db', clusterIP: '10.43.0.20' }], 'default');
  assert.deepEqual(hosts.map((h) => `${h.name}=${h.ip}`), [
    'web=10.43.0.10', 'web.default.svc=10.43.0.10', 'web.default.svc.cluster.local=10.43.0.10',
    'db.prod.svc=10.43.0.20', 'db.prod.svc.cluster.local=10.43.0.20',
  ]);
  assert.deepEqual(addHostArgs(hosts.slice(0, 1)), ['--add-host', 'web:10.43.0.10']);
});

test('the iptables applier: hooks once, then one restore per change, nothing for an unchanged set; close removes all', async () => {
  const { IptablesForwarder } = await import('../../agent/network/iptables.js');
  const { silentLogger } = await import('../../src/util/logger.js');
  const calls: string[] = [];
  const fwd = new IptablesForwarder({
    logger: silentLogger,
    run: async (cmd, args) => {
      calls.push(`${cmd} ${args.join(' ')}`);
      if (args.includes('-C')) throw new Error('no such rule');
      if (args.includes('-D') && calls.filter((c) => c === `${cmd} ${args.join(' ')}`).length > 1) throw new Error('gone');
      return args.includes('-S') ? '-N DROVER-SERVICES\n-N DROVER-SVC-OLD\n' : '';
    },
  });
  await fwd.sync([]);
  assert.equal(calls.length, 0, 'no Services ever: iptables is not touched');
  await fwd.sync([web([{ ip: '10.88.0.5', port: 8080, local: true }])]);
  assert.equal(calls.filter((c) => c.includes(' -I ')).length, 5, 'five hooks put in place');
  assert.ok(calls.at(-1)!.startsWith('iptables-restore --noflush'));
  calls.length = 0;
  await fwd.sync([web([{ ip: '10.88.0.5', port: 8080, local: true }])]);
  assert.equal(calls.length, 0, 'unchanged: no call');
  await fwd.sync([web([{ ip: '10.88.0.6', port: 8080, local: true }])]);
  assert.deepEqual(calls.map((c) => c.split(' ')[0]), ['iptables-restore'], 'a change is one restore');
  calls.length = 0;
  await fwd.close();
  assert.equal(calls.filter((c) => / -D (PREROUTING|OUTPUT|POSTROUTING|FORWARD) /.test(c)).length, 10, 'each hook removed (then found gone)');
  assert.ok(calls.some((c) => c.startsWith('iptables-restore')));
});
