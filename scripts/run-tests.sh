#!/usr/bin/env bash
# run-tests.sh — run every test this machine can run and print one summary line.
#
# Unit tests: each $BUILD/tests/test_* binary (cmocka). Integration tests: each
# tests/integration/NN-*.sh, in lexical order, each NN used once (the guard
# integration-numbers fails otherwise). Exit status 77 means "skipped: prerequisites
# missing" (the test prints why); a skip is shown and never counted as a pass.
# KRILL_TEST_FILTER=regex runs only matching tests. Each integration test runs under a
# wall-clock limit (KRILL_TEST_TIMEOUT seconds, default 1200): a hung test fails with
# rc=124 instead of holding the whole run.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export KRILL_BUILD=$root/$BUILD
filter=${KRILL_TEST_FILTER:-.}
logdir=$BUILD/test-logs; mkdir -p "$logdir"
passed=0; failed=0; skipped=0; failures=()

run_one() {  # name, command...
  local name=$1; shift
  [[ $name =~ $filter ]] || return 0
  local log=$logdir/$name.log t0=$SECONDS rc
  "$@" >"$log" 2>&1; rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); printf '  PASS  %-40s %4ss\n' "$name" "$dt"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); printf '  SKIP  %-40s %s\n' "$name" "$(grep -m1 -i 'skip' "$log" | cut -c1-100)"
  else
    failed=$((failed + 1)); failures+=("$name")
    [ $rc -eq 124 ] && echo "timed out after ${KRILL_TEST_TIMEOUT:-1200} s (KRILL_TEST_TIMEOUT)" >>"$log"
    printf '  FAIL  %-40s %4ss (rc=%s, log: %s)\n' "$name" "$dt" "$rc" "$log"
    tail -n 25 "$log" | sed 's/^/        | /'
  fi
}

echo "== unit tests ($BUILD)"
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
# Guard: each integration test has its own number NN (the run order is lexical).
integration_numbers_unique() {
  local dup
  dup=$(for t in tests/integration/[0-9]*.sh; do basename "$t"; done | sed 's/-.*//' | sort | uniq -d)
  [ -z "$dup" ] && return 0
  for n in $dup; do echo "integration tests share the number $n:" tests/integration/"$n"-*.sh; done
  return 1
}
if [ -d tests/integration ]; then
  echo "== integration tests"
  run_one integration-numbers integration_numbers_unique
  for t in tests/integration/[0-9]*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .sh)" timeout -k 20 "${KRILL_TEST_TIMEOUT:-1200}" bash "$t"
  done
fi
echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
