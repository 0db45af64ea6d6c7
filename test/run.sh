#!/usr/bin/env bash
# The whole suite (`npm test`) on two workers, one per core. The test files that drive real podman or
# network namespaces (those importing test/helpers/podman, fault or netns, or the podman runtime) run one
# at a time on the first worker, so they never share podman's storage or a fault with each other; the
# second starts with the unit tests (all in one process) and then takes integration files (fake runtime,
# simulated agents, brokers) from a shared queue, largest first; the first worker takes from that queue
# too once its own files are done, so neither core idles while the other has a backlog (a fixed split left
# one lane 3.9 min longer than the other). Every file's node:test spec output is printed whole once both
# are done, then one line: `N passed, N failed`. Exits non-zero when a test failed or a file could not run.
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
mapfile -t podman_files < <(grep -lE "$real_parts" test/integration/*.test.ts)

logs=$(mktemp -d)
trap 'rm -rf "$logs" "$units"' EXIT
queue=$logs/queue
# Largest file first (longest-processing-time first): the last files taken are the short ones.
grep -LE "$real_parts" test/integration/*.test.ts | xargs -r ls -S >"$queue"

# Per file: the process runs the file's tests itself (no `--test` parent: one Node and tsx start-up per
# file, not two). A file still running after this long is stopped and counted as failed. --test-force-exit:
# a file whose tests and hooks are all done exits even if a handle is still open (cluster-identity once
# passed all 13 tests and then held its worker for the whole 600 s).
FILE_TIMEOUT_SECONDS=${DROVER_TEST_FILE_TIMEOUT:-600}
# Output files are named WORKER-NNN-FILE.out: printed worker by worker, in the order each ran them.
ran=0
run_file() {
  local file=$1 out
  ran=$((ran + 1))
  out="$logs/$WORKER-$(printf '%03d' "$ran")-$(basename "$file").out"
  timeout --kill-after=10 "$FILE_TIMEOUT_SECONDS" node --import tsx --test-force-exit --test-reporter=spec "$file" >"$out" 2>&1
  echo "$? $file" >"${out%.out}.rc"
}

# Takes the first file off the shared queue (flock: both workers pop from it).
pop() {
  local f
  {
    flock 9
    f=$(head -n1 "$queue")
    [ -n "$f" ] && sed -i 1d "$queue"
  } 9>"$queue.lock"
  printf '%s' "$f"
}

drain_queue() {
  local f
  while f=$(pop) && [ -n "$f" ]; do run_file "$f"; done
}

worker_podman() {
  local f WORKER=2-podman
  for f in "${podman_files[@]}"; do run_file "$f"; done
  drain_queue
}

worker_other() {
  local WORKER=1-other
  run_file "$units"
  drain_queue
}

worker_podman &
podman_pid=$!
worker_other &
other_pid=$!
wait "$podman_pid" "$other_pid"

passed=0
failed=0
for out in "$logs"/*.out; do
  read -r rc file <"${out%.out}.rc"
  printf '\n===== %s =====\n' "$file"
  cat "$out"
  p=$(grep -E '^ℹ pass [0-9]+$' "$out" | tail -1 | awk '{print $3}')
  f=$(grep -E '^ℹ fail [0-9]+$' "$out" | tail -1 | awk '{print $3}')
  # Tests cancelled because a suite's before hook failed are not in `fail`: they did not pass either.
  c=$(grep -E '^ℹ cancelled [0-9]+$' "$out" | tail -1 | awk '{print $3}')
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf '%s: stopped after %s s (DROVER_TEST_FILE_TIMEOUT), counted as failed\n' "$file" "$FILE_TIMEOUT_SECONDS"
    failed=$((failed + 1))
    passed=$((passed + ${p:-0}))
    continue
  fi
  # A file that died before its summary counts as a failure, not as zero tests.
  if [ -z "$p" ] || [ -z "$f" ]; then
    printf '%s ended without a summary (exit %s)\n' "$file" "$rc"
    failed=$((failed + 1))
    continue
  fi
  passed=$((passed + p))
  failed=$((failed + f + ${c:-0}))
  # A file that failed with every test counted as passed (a failing hook at file level) still fails the run.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && [ "${c:-0}" -eq 0 ]; then
    printf '%s exited %s with no failed test counted: see its output above\n' "$file" "$rc"
    failed=$((failed + 1))
  fi
done
printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
