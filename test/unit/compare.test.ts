import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareNatural, compareStrings } from '../../src/util/compare.js';

test('compareStrings: code-unit order, as the Kubernetes API lists keys; timestamps in time order', () => {
  assert.deepEqual(['web-b', 'Web-a', 'web-a', 'web-10', 'web-9'].sort(compareStrings), ['Web-a', 'web-10', 'web-9', 'web-a', 'web-b']);
  assert.deepEqual(['2026-11-28T10:00:01Z', '2026-11-28T09:59:59Z', '2026-11-28T10:00:00Z'].sort(compareStrings), ['2026-11-28T09:59:59Z', '2026-11-28T10:00:00Z', '2026-11-28T10:00:01Z']);
  assert.equal(compareStrings('a', 'a'), 0);
});

test('compareNatural: digit runs compare as numbers (device names)', () => {
  assert.deepEqual(['ttyUSB10', 'ttyUSB2', 'ttyACM0', 'ttyUSB1', 'ttyUSB'].sort(compareNatural), ['ttyACM0', 'ttyUSB', 'ttyUSB1', 'ttyUSB2', 'ttyUSB10']);
  assert.deepEqual(['sdb', 'sda10', 'sda2', 'nvme0n1', 'nvme10n1'].sort(compareNatural), ['nvme0n1', 'nvme10n1', 'sda2', 'sda10', 'sdb']);
});

