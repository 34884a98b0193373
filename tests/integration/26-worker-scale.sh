#!/usr/bin/env bash
# 26-worker-scale: a second worker joins in the middle of 1,500 requests and the first
# one leaves (SIGTERM) later: cooperative rebalances hand partitions over; revoked
# partitions' work is finished and committed before release, so nothing is lost
# (and nothing is answered twice); both workers answered a share.
source tests/integration/lib/common.sh
need_bins
tiny_model
N=1500
broker_start 4
gen --valid $N --seed 26 --max-tokens 3 --prefix sc
readers_start
WORKER_SETS=(--set model.path="$TINY" --set batching.max_seqs=16)
worker_start w0
feed_start 50 0.5
for _ in $(seq 1 300); do grep -q "partitions assigned" "$T/w0.log" && break; sleep 0.1; done
sleep 3
worker_start w1
for _ in $(seq 1 300); do grep -q "partitions assigned" "$T/w1.log" && break; sleep 0.1; done
grep -q "partitions assigned" "$T/w1.log" || fail "w1 got no partitions"
note "w1 joined at $(answered) answered"
sleep 4
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "w0 exited $WRC on SIGTERM"
note "w0 left at $(answered) answered"
feed_wait
wait_answered $N 180
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "w1 exited $WRC"
readers_stop
check --max-dup 0 || fail "lost or duplicated answers across rebalances"
shared_work w0 w1 || fail "the work was not shared"
echo "PASS: join + leave mid-run: lost 0, dup 0"
