/** The agent's start-up on a small device: the hello's OS image without a helper library, and the V8 flags the entry point applies. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { osImageOf } from '../../agent/hardware.js';
import { AGENT_V8_FLAGS, agentV8Flags } from '../../agent/v8-flags.js';

test('the OS image is /etc/os-release PRETTY_NAME as the kubelet reports it, else NAME VERSION_ID, else the platform', () => {
  assert.equal(osImageOf('NAME="Debian GNU/Linux"\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', 'linux'), 'Debian GNU/Linux 12 (bookworm)');
  assert.equal(osImageOf("NAME='Alpine Linux'\nVERSION_ID=3.19.1\n", 'linux'), 'Alpine Linux 3.19.1');
  assert.equal(osImageOf('PRETTY_NAME=""\nNAME=Buildroot\n', 'linux'), 'Buildroot', 'an empty PRETTY_NAME is none');
  assert.equal(osImageOf(undefined, 'linux'), 'linux', 'no os-release at all');
  assert.equal(osImageOf('garbage without fields', 'linux'), 'linux');
});

test('the agent runs V8 in lite mode unless DROVER_AGENT_V8_FLAGS says otherwise (empty: none)', () => {
  assert.deepEqual(agentV8Flags({}), [...AGENT_V8_FLAGS]);
  assert.ok(AGENT_V8_FLAGS.includes('--lite-mode'));
  assert.deepEqual(agentV8Flags({ DROVER_AGENT_V8_FLAGS: '' }), []);
  assert.deepEqual(agentV8Flags({ DROVER_AGENT_V8_FLAGS: ' --max-semi-space-size=1   --lite-mode ' }), ['--max-semi-space-size=1', '--lite-mode']);
});
