#!/usr/bin/env bash
# The whole suite (`npm test`) in two lanes, one per core: the tests that drive real podman or network
# namespaces (those importing test/helpers/podman, fault or netns, or the podman runtime) one file at a
# time in one lane, so they never share podman's storage or a fault with each other; every other test
# (unit tests, all in one process, then integration tests on the fake runtime, simulated agents,
# brokers, one file at a time) in the other. Each lane's node:test spec output is printed whole once both are done, then one line:
# `N passed, N failed`. Exits non-zero when a test failed or a lane could not run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

# The single-binary tests run dist/bin/drover-linux-*: built first when missing or older than the sources.
scripts/binary/ensure.sh || { echo "npm run build:binary failed" >&2; exit 1; }

real_parts='helpers/(podman|fault|netns)\.js|agent/runtime/podman'
# The unit tests run in one process: started one file at a time, each of the 70 paid ~2 s of Node, tsx
# and module loading (2 min 50 s in all on a busy machine, 36 s in one process). The list is made here,
# from the files present, so a new unit test file cannot be left out.
units=test/unit/.all-units.test.ts
for f in test/unit/*.test.ts; do printf "import './%s';\n" "$(basename "$f")"; done >"$units"
mapfile -t podman_lane < <(grep -lE "$real_parts" test/integration/*.test.ts)
mapfile -t other_lane < <(echo "$units"; grep -LE "$real_parts" test/integration/*.test.ts)

logs=$(mktemp -d)
trap 'rm -rf "$logs" "$units"' EXIT
lane() {
  local log=$1
  shift
  node --import tsx --test --test-concurrency=1 --test-timeout=240000 --test-reporter=spec "$@" >"$log" 2>&1
}

lane "$logs/podman.log" "${podman_lane[@]}" &
podman_pid=$!
lane "$logs/other.log" "${other_lane[@]}" &
other_pid=$!
wait "$podman_pid"
podman_rc=$?
wait "$other_pid"
other_rc=$?

passed=0
failed=0
for name in other podman; do
  log="$logs/$name.log"
  printf '\n===== lane: %s =====\n' "$name"
  cat "$log"
  p=$(grep -E '^ℹ pass [0-9]+$' "$log" | tail -1 | awk '{print $3}')
  f=$(grep -E '^ℹ fail [0-9]+$' "$log" | tail -1 | awk '{print $3}')
  # Tests cancelled because a suite's before hook failed are not in `fail`: they did not pass either.
  c=$(grep -E '^ℹ cancelled [0-9]+$' "$log" | tail -1 | awk '{print $3}')
  # A lane that died before its summary counts as a failure, not as zero tests.
  if [ -z "$p" ] || [ -z "$f" ]; then
    printf 'lane %s ended without a summary\n' "$name"
    failed=$((failed + 1))
    continue
  fi
  passed=$((passed + p))
  failed=$((failed + f + ${c:-0}))
done
# A lane that failed with every test counted as passed (a failing hook at file level) still fails the run.
if [ "$failed" -eq 0 ] && { [ "$podman_rc" -ne 0 ] || [ "$other_rc" -ne 0 ]; }; then
  printf 'a lane exited non-zero (other %d, podman %d) with no failed test counted: see its log above\n' "$other_rc" "$podman_rc"
  failed=1
fi
printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$podman_rc" -eq 0 ] && [ "$other_rc" -eq 0 ] && [ "$failed" -eq 0 ]
