#!/usr/bin/env bash
# 24-worker-sigterm: SIGTERM in the middle of 1,000 requests (fed over 10 s), then a
# restart: the worker drains, commits and exits 0; nothing is lost and nothing is
# answered twice (dup 0).
source tests/integration/lib/common.sh
need_bins
tiny_model
test_seed
N=1000
broker_start 4
gen --valid $N --seed 24 --max-tokens 3 --prefix st
readers_start
WORKER_SETS=(--set model.path="$TINY" --set worker.queue_high=128 --set worker.queue_low=64)
worker_start w0
feed_start 50 0.5
for _ in $(seq 1 300); do grep -q "partitions assigned" "$T/w0.log" && break; sleep 0.1; done
sleep "$(( 20 + RANDOM % 40 ))e-1"
a0=$(answered)
worker_stop w0 TERM
note "SIGTERM after $a0 answered: exit $WRC"
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
grep -q 'msg="worker stopped"' "$T/w0.log" || fail "no orderly stop in the log"
grep -q "drain timed out" "$T/w0.log" && fail "drain timed out"
worker_start w1
feed_wait
wait_answered $N 180
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "second worker exited $WRC"
readers_stop
check --max-dup 0 || fail "lost or duplicated answers across a SIGTERM"
echo "PASS: SIGTERM at $a0/$N answered, restart: lost 0, dup 0"
