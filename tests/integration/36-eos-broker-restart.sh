#!/usr/bin/env bash
# 36-eos-broker-restart: delivery.mode exactly_once. The broker is killed (kill -9) in
# the middle of 1,500 requests and started again 15 s later on the same data. The same
# worker carries on by itself (its transaction calls retry within
# delivery.transaction_timeout_ms, or the transaction aborts and the partitions rewind):
# a read_committed reader sees lost 0, dup 0, and the worker still stops cleanly.
source tests/integration/lib/common.sh
need_bins
tiny_model
N=1500
broker_start 4
gen --valid $N --seed 36 --max-tokens 3 --prefix eb
readers_start
worker_start w0 --set model.path="$TINY" --set delivery.mode=exactly_once
feed_start 50 0.5
for _ in $(seq 1 300); do grep -q "partitions assigned" "$T/w0.log" 2>/dev/null && break; sleep 0.1; done
sleep 3
a0=$(answered)
pid=$(cat "$KRILL_KAFKA_STATE/pid" 2>/dev/null)
[ -n "$pid" ] || fail "cannot find the broker's pid in $KRILL_KAFKA_STATE/pid"
kill -KILL "$pid"
# what `kafka-local.sh stop --keep-data` leaves, so that start reuses the data
touch "$KRILL_KAFKA_STATE/kept"; rm -f "$KRILL_KAFKA_STATE/pid"
note "broker killed (-9, pid $pid) after $a0 answered"
sleep 15
worker_alive w0 || fail "the worker died while the broker was down"
scripts/kafka-local.sh start >"$T/kafka-restart.log" 2>&1 || fail "broker restart failed: $(tail -n 5 "$T/kafka-restart.log")"
note "broker started again"
feed_wait
wait_answered $N 240
worker_alive w0 || fail "the worker died after the broker came back"
sleep 2
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM after the outage"
readers_stop
grep -h "transaction aborted" "$T/w0.log" | head -n 3
check --max-dup 0 || fail "not exactly once across a broker kill -9"
echo "PASS: broker kill -9 at $a0/$N answered, restarted 15 s later: lost 0, dup 0"
