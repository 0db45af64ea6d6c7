/**
 * `logs -p / --since / --since-time / --timestamps / --limit-bytes`: the runtime arguments, where the
 * previous instance of an in-place restarted container lies, the agent's answer (with the options it
 * applied), and the server refusing an agent that does not say it applied them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lastLines, limitBytes, logOptions, previousLog, RequestHandler } from '../../agent/requests.js';
import { logArgs } from '../../agent/runtime/cli.js';
import type { ContainerRuntime, LogOptions, RuntimeContainer } from '../../agent/runtime/types.js';
import { NodeProxy, type NodeRequester } from '../../server/api/node-proxy.js';
import type { Store } from '../../server/store/types.js';
import type { Request, Response } from '../../src/contract/payloads.js';
import { DroverError } from '../../src/util/errors.js';

const running = (o: Partial<RuntimeContainer> = {}): RuntimeContainer => ({ id: 'c1', name: 'n', image: 'i', labels: {}, state: 'running', ...o });

test('logArgs: since, until (nanoseconds kept), timestamps and tail before the id, as podman and nerdctl take them', () => {
  assert.deepEqual(logArgs({}), ['logs']);
  assert.deepEqual(logArgs({ tail: 0 }), ['logs', '--tail', '0']);
  assert.deepEqual(logArgs({ since: '2026-11-28T02:25:19.367424658Z', until: '2026-11-28T02:25:20.1Z', timestamps: true, tail: 5 }), [
    'logs', '--since', '2026-11-28T02:25:19.367424658Z', '--until', '2026-11-28T02:25:20.1Z', '--timestamps', '--tail', '5',
  ]);
});

test('logOptions: sinceSeconds counts back on the agent\'s clock; sinceTime passes as given', () => {
  const now = Date.parse('2026-11-28T03:00:00Z');
  assert.deepEqual(logOptions({ sinceSeconds: 90, timestamps: true, tail: 3 }, now), { since: '2026-11-28T02:58:30.000Z', timestamps: true, tail: 3 });
  assert.deepEqual(logOptions({ sinceTime: '2026-11-28T01:00:00Z' }, now), { since: '2026-11-28T01:00:00Z' });
  assert.deepEqual(logOptions({ timestamps: false }, now), {});
});

test('previousLog: podman\'s kept end of the run before; nerdctl\'s start of this run; an exited run; a replaced container; none', () => {
  const end = '2026-11-28T02:25:19.367424658Z';
  const start = '2026-11-28T02:25:20.237929235Z';
  // Cut halfway into the gap between the runs, at most 500 ms after the recorded end (podman's end is
  // coarser than its lines' times).
  assert.deepEqual(previousLog(running({ exact: { startedAt: start, finishedAt: end } }), undefined, true), { id: 'c1', until: '2026-11-28T02:25:19.802Z' });
  assert.deepEqual(previousLog(running({ exact: { startedAt: '2026-11-28T02:25:19.467Z', finishedAt: end } }), undefined, true), { id: 'c1', until: '2026-11-28T02:25:19.417Z' });
  // podman without a previous end: this is the first run, even if a line came before podman recorded the start.
  assert.equal(previousLog(running({ exact: { startedAt: start } }), undefined, true), undefined);
  assert.deepEqual(previousLog(running({ exact: { startedAt: start } }), undefined, false), { id: 'c1', until: '2026-11-28T02:25:19.987Z', emptyIsNone: true });
  // Kubernetes' lastState.terminated of a crash-looping container is the run that just ended.
  assert.deepEqual(previousLog(running({ state: 'exited', exact: { startedAt: start, finishedAt: end } }), undefined, true), { id: 'c1' });
  assert.deepEqual(previousLog(running({ exact: { startedAt: start } }), running({ id: 'old', state: 'exited' }), true), { id: 'old' });
  assert.equal(previousLog(running({ state: 'created' }), undefined, true), undefined);
});

test('lastLines: the last N lines, a last line without newline counting as one', () => {
  assert.equal(lastLines('a\nb\nc\n', 2), 'b\nc\n');
  assert.equal(lastLines('a\nb\nc', 1), 'c');
  assert.equal(lastLines('a\n', 5), 'a\n');
  assert.equal(lastLines('a\nb\n', 0), '');
  assert.equal(lastLines('a\nb\n', undefined), 'a\nb\n');
});

test('limitBytes: the first N bytes, never half a character', () => {
  assert.equal(limitBytes('abcdef', 3), 'abc');
  assert.equal(limitBytes('abc', 10), 'abc');
  assert.equal(limitBytes('aé', 2), 'a');
  assert.equal(limitBytes('abc', undefined), 'abc');
});

/** A runtime holding one pod container; logs() records what it was asked. */
function stubRuntime(containers: RuntimeContainer[], keepsLastRunEnd = true): ContainerRuntime & { asked: Array<{ id: string; opts: LogOptions }> } {
  const asked: Array<{ id: string; opts: LogOptions }> = [];
  const rt = {
    name: 'stub',
    keepsLastRunEnd,
    asked,
    list: async () => containers,
    inspect: async (id: string) => containers.find((c) => c.id === id),
    logs: async (id: string, opts: LogOptions) => {
      asked.push({ id, opts });
      return opts.until ? 'first run\n' : 'first run\nsecond run\n';
    },
  };
  return rt as unknown as ContainerRuntime & { asked: typeof asked };
}

const labels = { 'drover.io/managed': 'true', 'drover.io/namespace': 'default', 'drover.io/pod': 'web', 'drover.io/pod-uid': 'u1', 'drover.io/container': 'main' };
const logsReq = (o: Partial<Extract<Request, { op: 'logs' }>> = {}): Request => ({ op: 'logs', namespace: 'default', pod: 'web', uid: 'u1', container: 'main', ...o });

test('RequestHandler: -p asks up to the previous run\'s end and says which options it applied; no previous run is kubectl\'s error', async () => {
  const end = '2026-11-28T02:25:19.367424658Z';
  const rt = stubRuntime([running({ labels, createdAt: '2026-11-28T02:20:00.000Z', exact: { startedAt: '2026-11-28T02:25:20.2Z', finishedAt: end } })]);
  const h = new RequestHandler(rt, () => Date.parse('2026-11-28T03:00:00Z'));
  assert.deepEqual(await h.handle(logsReq({ previous: true, timestamps: true, limitBytes: 5 })), { ok: true, data: 'first', honoured: ['previous', 'timestamps', 'limitBytes'] });
  assert.deepEqual(rt.asked.pop(), { id: 'c1', opts: { timestamps: true, until: '2026-11-28T02:25:19.783Z' } });
  // The tail is cut by the agent after --until (podman would cut it first, and find nothing).
  assert.deepEqual(await h.handle(logsReq({ previous: true, tail: 1 })), { ok: true, data: 'first run\n', honoured: ['previous'] });
  assert.deepEqual(rt.asked.pop(), { id: 'c1', opts: { until: '2026-11-28T02:25:19.783Z' } });
  assert.deepEqual(await h.handle(logsReq({ sinceSeconds: 60 })), { ok: true, data: 'first run\nsecond run\n', honoured: ['sinceSeconds'] });
  assert.deepEqual(rt.asked.pop(), { id: 'c1', opts: { since: '2026-11-28T02:59:00.000Z' } });
  assert.deepEqual(await h.handle(logsReq()), { ok: true, data: 'first run\nsecond run\n', honoured: [] });

  const fresh = new RequestHandler(stubRuntime([running({ labels, exact: { startedAt: '2026-11-28T02:25:20.2Z' } })]));
  assert.deepEqual(await fresh.handle(logsReq({ previous: true })), {
    ok: false,
    error: { code: 'BadRequest', message: 'previous terminated container "main" in pod "web" not found' },
    honoured: ['previous'],
  });
});

function proxy(answer: (req: Request) => Response): { proxy: NodeProxy; sent: Request[] } {
  const sent: Request[] = [];
  const link: NodeRequester = { request: async (_node, req) => (sent.push(req), answer(req)) };
  const store = { get: async () => ({ metadata: { name: 'web', uid: 'u1' }, spec: { nodeName: 'edge-1', containers: [{ name: 'main' }] } }) } as unknown as Store;
  return { proxy: new NodeProxy({ store, link, requestTimeoutMs: 1000 }), sent };
}

test('NodeProxy: the options reach the agent; an agent that does not say it applied them is refused, not believed', async () => {
  const modern = proxy((req) => ({ ok: true, data: 'first run\n', honoured: (['previous', 'sinceTime', 'timestamps'] as const).filter((o) => o in req && (req as any)[o] !== undefined) }));
  assert.equal(await modern.proxy.logs({ namespace: 'default', pod: 'web', previous: true, sinceTime: '2026-11-28T02:00:00Z', timestamps: true }), 'first run\n');
  assert.deepEqual(modern.sent[0], { op: 'logs', namespace: 'default', pod: 'web', uid: 'u1', container: 'main', tail: undefined, previous: true, sinceSeconds: undefined, sinceTime: '2026-11-28T02:00:00Z', timestamps: true, limitBytes: undefined });

  // An agent of before these options: it drops them and answers with the whole current log.
  const old = proxy(() => ({ ok: true, data: 'first run\nsecond run\n' }));
  await assert.rejects(old.proxy.logs({ namespace: 'default', pod: 'web', previous: true }), (e: unknown) => e instanceof DroverError && e.code === 501 && /too old for previous/.test(e.message));
  // Nothing asked beyond tail: the old agent's answer is fine.
  assert.equal(await old.proxy.logs({ namespace: 'default', pod: 'web', tail: 2 }), 'first run\nsecond run\n');

  const none = proxy(() => ({ ok: false, error: { code: 'BadRequest', message: 'previous terminated container "main" in pod "web" not found' }, honoured: ['previous'] }));
  await assert.rejects(none.proxy.logs({ namespace: 'default', pod: 'web', previous: true }), (e: unknown) => e instanceof DroverError && e.code === 400 && e.message === 'previous terminated container "main" in pod "web" not found');
});
