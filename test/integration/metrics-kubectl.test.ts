/**
 * The server's /metrics as a Kubernetes user reads it: `kubectl get --raw /metrics` with the kubeconfig
 * drover writes (kubectl v1.32), with a view token's kubeconfig too; a kubeconfig whose token is not
 * valid gets kubectl's 401 ("You must be logged in to the server") and no figures.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metrics, parseExposition } from '../../bench/lib/metrics.js';
import { startKubectlCluster, type KubectlCluster } from '../helpers/kubectl.js';

describe('kubectl get --raw /metrics', () => {
  let c: KubectlCluster;
  before(async () => {
    c = await startKubectlCluster({ nodes: ['edge-a'] });
  });
  after(async () => {
    await c?.stop();
  });

  test('admin and view kubeconfigs read the figures kubectl itself just caused; a bad token does not', async () => {
    await c.good(['get', 'pods']);
    const m = new Metrics(parseExposition(await c.good(['get', '--raw', '/metrics'])));
    // kubectl's own list a moment ago, and the one agent on the link.
    assert.ok(m.value('drover_apiserver_request_duration_seconds_count', { verb: 'list', resource: 'pods', code: '200' }) >= 1);
    assert.equal(m.value('drover_mqtt_connected_agents'), 1);

    const made = await c.t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'kubectl metrics' });
    assert.equal(made.status, 201, made.text);
    const view = await c.kubeconfigFor(made.body.token, 'view.kubeconfig');
    const viewed = await c.good(['get', '--raw', '/metrics'], { env: { KUBECONFIG: view } });
    assert.match(viewed, /^drover_apiserver_request_duration_seconds_bucket\{/m);

    const bad = await c.kubeconfigFor(`${made.body.id}.${'x'.repeat(32)}`, 'bad.kubeconfig');
    const refused = await c.kubectl(['get', '--raw', '/metrics'], { env: { KUBECONFIG: bad } });
    assert.notEqual(refused.code, 0);
    // kubectl's words for a 401.
    assert.match(refused.stderr, /You must be logged in to the server/);
    assert.doesNotMatch(refused.stdout + refused.stderr, /drover_|process_resident/);
  });
});
