/** The agent's start-up on a small device: the V8 flags the entry point applies. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AGENT_V8_FLAGS, agentV8Flags } from '../../agent/v8-flags.js';

test('the agent runs V8 in lite mode unless DROVER_AGENT_V8_FLAGS says otherwise (empty: none)', () => {
  assert.deepEqual(agentV8Flags({}), [...AGENT_V8_FLAGS]);
  assert.ok(AGENT_V8_FLAGS.includes('--lite-mode'));
  assert.deepEqual(agentV8Flags({ DROVER_AGENT_V8_FLAGS: '' }), []);
  assert.deepEqual(agentV8Flags({ DROVER_AGENT_V8_FLAGS: ' --max-semi-space-size=1   --lite-mode ' }), ['--max-semi-space-size=1', '--lite-mode']);
});
