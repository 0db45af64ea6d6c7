/**
 * `kubectl logs -f` streams are bounded per token: each one asks the pod's node once a second for as
 * long as it is open, so one token holding many would load the node and its link. The 9th follow of a
 * token gets 429 naming the limit; another token is not affected; closing a follow frees its place.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FOLLOWERS_PER_IDENTITY } from '../../server/api/log-follow.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

describe('log follows per token', () => {
  let t: TestServer;
  const open: AbortController[] = [];

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-a', runtime: new FakeRuntime({ growingLogs: true }), heartbeatSeconds: 1, resyncSeconds: 1 });
    const r = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'chatty' }, spec: { nodeName: 'edge-a', containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(r.status, 201, r.text);
    await waitFor('pod Running', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/chatty')).body?.status?.phase === 'Running');
  });
  after(async () => {
    for (const c of open) c.abort();
    await t?.stop();
  });

  /** Opens a follow; resolves with its status once the server answered (the stream stays open until aborted). */
  async function follow(token: string): Promise<{ status: number; text?: string; stop: () => void }> {
    const c = new AbortController();
    open.push(c);
    const res = await fetch(`${t.apiUrl}/api/v1/namespaces/default/pods/chatty/log?follow=true`, { headers: { authorization: `Bearer ${token}` }, signal: c.signal });
    if (res.status !== 200) return { status: res.status, text: await res.text(), stop: () => c.abort() };
    // Read the first chunk: the stream is live.
    const reader = res.body!.getReader();
    await reader.read();
    return { status: 200, stop: () => c.abort() };
  }

  test('the 9th follow of a token is 429 naming the limit; another token may follow; a closed follow frees its place', async () => {
    const held = [];
    for (let i = 0; i < FOLLOWERS_PER_IDENTITY; i++) held.push(await follow(t.token));
    assert.ok(held.every((h) => h.status === 200));

    const refused = await follow(t.token);
    assert.equal(refused.status, 429, refused.text);
    assert.match(refused.text ?? '', new RegExp(`at most ${FOLLOWERS_PER_IDENTITY} at once`));

    const made = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'dashboard' });
    assert.equal(made.status, 201, made.text);
    const other = await follow(made.body.token);
    assert.equal(other.status, 200, 'another token is not affected');

    held[0]!.stop();
    const again = await waitFor('a place freed by the closed follow', async () => {
      const f = await follow(t.token);
      if (f.status === 200) return f;
      f.stop();
      return undefined;
    });
    assert.equal(again.status, 200);
  });
});
