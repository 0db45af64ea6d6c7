import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatJoinToken, parseJoinToken } from '../../server/identity/join-token.js';
import { ValidationError } from '../../src/util/errors.js';

const HASH = 'ab'.repeat(32);
const CRED = 'k3x9q2.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1';

test('a K10 token carries the CA hash and the credential the token store redeems', () => {
  const t = formatJoinToken(HASH.toUpperCase(), CRED);
  assert.equal(t, `K10${HASH}::${CRED}`);
  assert.deepEqual(parseJoinToken(`  ${t}\n`), { caHash: HASH, credential: CRED });
});

test('a malformed token is refused without echoing its secret', () => {
  for (const bad of [CRED, `K10${HASH.slice(2)}::${CRED}`, `K10${HASH}:${CRED}`, `K10${HASH}::${CRED}/x`, `K10${HASH}::+.${'a'.repeat(20)}`, '']) {
    assert.throws(
      () => parseJoinToken(bad),
      (err: Error) => {
        assert.ok(err instanceof ValidationError);
        assert.match(err.message, /^invalid join token: token: /);
        assert.ok(!err.message.includes('Zm9vYmFy'), err.message);
        return true;
      },
      bad,
    );
  }
});
