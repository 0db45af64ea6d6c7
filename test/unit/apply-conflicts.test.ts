/**
 * `apply` (CLI and the MQTT command door) against a writer that keeps winning: a Deployment controller writes
 * the object's status on every pod change while it scales, so a PUT carrying the version just read can
 * lose many rounds on a loaded machine (CI lost five in a row). The API is a stand-in here: what is tested is
 * the client's retry, which must outlast such a run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyObject } from '../../src/cli/apply.js';
import { CliError, type ApiClient } from '../../src/cli/client.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';

function deployment(image: string, resourceVersion?: string): ApiObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', ...(resourceVersion ? { resourceVersion } : {}) },
    spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image }] } } },
  } as unknown as ApiObject;
}

/** An API whose object another writer changes between each read and write, `losses` times. */
function racingApi(losses: number) {
  let version = 10;
  let stored = deployment('web:1', String(version));
  const puts: string[] = [];
  const client = {
    async getOptional<T>() {
      return structuredClone(stored) as T;
    },
    async create<T>(): Promise<T> {
      throw new CliError('already exists', { code: 409, reason: 'AlreadyExists' });
    },
    async replace<T>(_path: string, body: ApiObject): Promise<T> {
      puts.push(body.metadata.resourceVersion!);
      if (losses > 0) {
        losses--;
        // The controller's status write landed first.
        stored = { ...stored, metadata: { ...stored.metadata, resourceVersion: String(++version) } };
        throw new CliError('the object has been modified', { code: 409, reason: 'Conflict' });
      }
      assert.equal(body.metadata.resourceVersion, String(version), 'the PUT carries the version last read');
      stored = { ...body, metadata: { ...body.metadata, resourceVersion: String(++version) } };
      return structuredClone(stored) as T;
    },
  } as unknown as ApiClient;
  return { client, puts, current: () => stored };
}

test('apply outlasts a writer that wins eight rounds in a row, and stores the new image', async () => {
  const api = racingApi(8);
  const result = await applyObject(api.client, deployment('web:2'), { kind: kindInfo('Deployment') });
  assert.equal(result, 'configured');
  assert.equal(api.puts.length, 9);
  const spec = api.current().spec as { template: { spec: { containers: { image: string }[] } } };
  assert.equal(spec.template.spec.containers[0]!.image, 'web:2');
});

test('an error that is not a conflict surfaces at once: one PUT, no retry', async () => {
  let puts = 0;
  const client = {
    async getOptional<T>() {
      return deployment('web:1', '10') as T;
    },
    async replace(): Promise<never> {
      puts++;
      throw new CliError('spec.replicas: must be >= 0', { code: 422, reason: 'Invalid' });
    },
  } as unknown as ApiClient;
  const started = performance.now();
  await assert.rejects(applyObject(client, deployment('web:2'), { kind: kindInfo('Deployment') }), (err: CliError) => err.code === 422);
  assert.equal(puts, 1);
  assert.ok(performance.now() - started < 1_000);
});

test('created by someone else between the read and the create: apply goes round and updates what they created', async () => {
  let stored: ApiObject | undefined;
  const calls: string[] = [];
  const client = {
    async getOptional<T>() {
      calls.push(stored ? 'get' : 'get (none)');
      return (stored ? structuredClone(stored) : undefined) as T;
    },
    async create(): Promise<never> {
      calls.push('create (AlreadyExists)');
      stored = deployment('web:0', '7');
      throw new CliError('deployments.apps "web" already exists', { code: 409, reason: 'AlreadyExists' });
    },
    async replace<T>(_path: string, body: ApiObject): Promise<T> {
      calls.push(`put at ${body.metadata.resourceVersion}`);
      stored = body;
      return body as T;
    },
  } as unknown as ApiClient;
  assert.equal(await applyObject(client, deployment('web:2'), { kind: kindInfo('Deployment') }), 'configured');
  assert.deepEqual(calls, ['get (none)', 'create (AlreadyExists)', 'get', 'put at 7']);
});
