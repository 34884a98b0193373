#!/usr/bin/env bash
# 33-partitions-added: partitions added to the request topic while a worker runs are
# consumed within the documented refresh interval (topic.metadata.refresh.interval.ms =
# 10 s for the consumer, docs/operations.md "Changing the request topic") plus the
# rebalance: requests written straight to the new partitions are all answered.
source tests/integration/lib/common.sh
need_bins
command -v kcat >/dev/null 2>&1 || skip "kcat not found (scripts/setup.sh installs it)"
tiny_model
REFRESH_S=10 # the consumer's topic.metadata.refresh.interval.ms (src/worker/kafka.c)
MARGIN_S=15  # the rebalance, the fetch and the answers on a busy 2-core machine
broker_start 1
: >"$T/expect.jsonl"
# phase NAME N [PARTITION]: N fresh requests (ids NAME-*), to PARTITION with kcat when given.
phase() {
  gen_more "$1" "$2"
  if [ $# -ge 3 ]; then
    kcat -P -b "$BROKERS" -t krill.requests -p "$3" <"$T/$1.jsonl" 2>"$T/kcat.log" || fail "kcat produce failed: $(cat "$T/kcat.log")"
  else
    enqueue "$T/$1.jsonl"
  fi
}
readers_start
worker_start w1 --set model.path="$TINY"
phase a 10
wait_answered 10 60
scripts/kafka-local.sh alter --partitions 3 krill.requests >"$T/admin.log" 2>&1 || fail "alter failed: $(cat "$T/admin.log")"
t0=$SECONDS
note "krill.requests grown to 3 partitions; 10 requests into each new one"
phase b 10 1
phase c 10 2
wait_answered 30 $((REFRESH_S + MARGIN_S))
took=$((SECONDS - t0))
grep -q 'partitions assigned.*count=2' "$T/w1.log" || fail "the new partitions were not assigned incrementally"
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
readers_stop
check --max-dup 0 || fail "requests of the new partitions lost or answered twice"
echo "PASS: 2 partitions added under a running worker: their 20 requests answered ${took}s after the change (refresh ${REFRESH_S}s)"
