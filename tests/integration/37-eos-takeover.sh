#!/usr/bin/env bash
# 37-eos-takeover: delivery.mode exactly_once, two workers (different worker.id, so
# different transactional.ids) share 1,500 requests; one is killed -9 and not restarted.
# The other takes its partitions over once the group notices (session timeout 6 s) and
# once the dead worker's open transaction is aborted by the broker
# (delivery.transaction_timeout_ms, 10 s here: until then its offsets are "unstable" and
# the survivor waits for them). A read_committed reader sees lost 0, dup 0.
source tests/integration/lib/common.sh
N=1500
eos_begin $N 37 et 3
WORKER_SETS=(--set model.path="$TINY" --set batching.max_seqs=16 --set delivery.mode=exactly_once
             --set delivery.transaction_timeout_ms=10000)
worker_start w0
feed_start 50 0.5
wait_assigned w0
sleep 2
worker_start w1
wait_assigned w1
sleep 3
a0=$(answered)
kill9 w0
note "w0 killed -9 at $a0 answered; w1 takes over"
feed_wait
wait_answered $N 200
sleep 2
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "w1 exited $WRC"
readers_stop
check --max-dup 0 || fail "not exactly once across a takeover after kill -9"
shared_work w0 w1 || fail "the work was not shared"
echo "PASS: one of two workers killed -9, the other took over: lost 0, dup 0"
