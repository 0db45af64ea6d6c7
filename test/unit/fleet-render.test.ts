import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import { frame, renderFleetStatus } from '../../src/cli/fleet.js';
import { fleetStatus } from '../../server/fleet/summary.js';

const NOW = Date.parse('2026-11-27T12:00:00Z');

function node(i: number): Node {
  const silent = i % 10 === 0;
  return {
    apiVersion: 'v1', kind: 'Node', metadata: { name: `n${String(i).padStart(4, '0')}`, labels: { site: `s${i % 30}` } }, spec: {},
    status: {
      lastHeard: new Date(NOW - (silent ? 600_000 : 1_000)).toISOString(),
      conditions: [{ type: 'Ready', status: 'True' }],
      nodeInfo: { architecture: 'arm64', operatingSystem: 'linux', osImage: '', kernelVersion: '', containerRuntimeVersion: 'podman://4.3.1', agentVersion: `0.${i % 9}.0`, contractVersion: 1, bootID: '' },
    },
  };
}

test('one screen for 3,000 nodes in 30 sites and 9 agent versions; silent nodes counted Stale, not Ready', () => {
  const s = fleetStatus({ nodes: Array.from({ length: 3000 }, (_, i) => node(i)), pods: [], deployments: [], daemonSets: [], nowMs: NOW, serverVersion: '0.1.0' });
  const text = renderFleetStatus(s);
  assert.ok(text.split('\n').length <= 60, text);
  assert.match(text, /^ {2}Ready\s+2700\s+90%/m);
  assert.match(text, /^ {2}Stale\s+300\s+10%\s+10m \(n0000\)/m);
  assert.match(text, /\.\.\. \+22 more sites/);
  assert.match(text, /\.\.\. \+4 more versions/);
  // Every version but the server's is skew here: the majority is a tie broken by name (0.0.0).
  assert.match(text, /0\.1\.0\s+334\s+SKEW/);
  assert.match(text, /NEEDS ATTENTION \(300, worst first\)/);
});

test('a watch frame is drawn from the top-left over the last one: each line cleared to its end, then the rest of the screen', () => {
  const f = frame('a\nbb\n');
  assert.equal(f, '\x1b[Ha\x1b[K\nbb\x1b[K\n\x1b[J');
  assert.ok(!f.includes('\x1b[2J'), 'no full clear (it flickers)');
});
