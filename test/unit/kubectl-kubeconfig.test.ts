import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kubeconfig } from '../../src/cli/kubeconfig.js';

test('the kubeconfig names the server, trusts the cluster CA by its data and carries the token in one context', () => {
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const k = kubeconfig({ server: 'https://10.0.0.1:6443', token: 'tok', ca, name: 'drover', namespace: 'edge' }) as any;
  assert.equal(k.clusters[0].cluster.server, 'https://10.0.0.1:6443');
  assert.equal(Buffer.from(k.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), ca);
  assert.equal(k.clusters[0].cluster['insecure-skip-tls-verify'], undefined, 'never turns verification off');
  assert.equal(k.users[0].user.token, 'tok');
  assert.deepEqual(k.contexts[0], { name: 'drover', context: { cluster: 'drover', user: 'drover', namespace: 'edge' } });
  assert.equal(k['current-context'], 'drover');
});

test('a plain-http server is refused: kubectl would not send the token to it', () => {
  assert.throws(() => kubeconfig({ server: 'http://10.0.0.1:6443', token: 'tok', name: 'drover' }), /only over https/);
});
