import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/util/logger.js';

const VALUE = 'hunter2-log-canary';
const B64 = Buffer.from(VALUE).toString('base64');

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, stream };
}

test('credentials and Secret data are redacted wherever a log record carries them; counts and other fields stay', () => {
  const { lines, stream } = capture();
  const log = createLogger({ name: 't', level: 'trace', destination: stream });
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, data: { password: B64 }, stringData: { pw: VALUE } };
  log.info({ req: { headers: { authorization: `Bearer ${VALUE}` } } }, 'request');
  log.info({ headers: { authorization: `Bearer ${VALUE}` } }, 'request');
  log.info({ token: VALUE, joinToken: VALUE, password: VALUE, brokerPassword: VALUE }, 'credentials');
  log.info({ object: secret }, 'object');
  log.info({ event: { object: secret } }, 'nested object');
  log.debug({ desired: { node: 'a', secrets: [{ name: 'db', data: { password: B64 } }] } }, 'desired');
  log.debug({ args: ['create', '--name', 'c', '--env', `PW=${VALUE}`, '-e', `X=${VALUE}`, `--env=Y=${VALUE}`, 'localhost/app:1'], exitCode: 0 }, 'podman call');
  log.debug({ node: 'a', secrets: 3, pods: 2 }, 'desired state published');
  const out = lines.join('');
  assert.ok(!out.includes(VALUE) && !out.includes(B64), out);
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(records[6]!.args, ['create', '--name', 'c', '--env', 'PW=[Redacted]', '-e', 'X=[Redacted]', '--env=Y=[Redacted]', 'localhost/app:1']);
  assert.equal(records[7]!.secrets, 3, 'a count is not a secret');
  assert.equal((records[3]!.object as { metadata: { name: string } }).metadata.name, 'db', 'the Secret is still named');
});
