#!/usr/bin/env bash
# 25-broker-restart: the broker is stopped for 20 s in the middle of 1,500 requests
# and started again on the same data. The same worker process carries on by itself:
# every request is answered (lost 0) and it still stops cleanly afterwards.
source tests/integration/lib/common.sh
need_bins
tiny_model
N=1500
broker_start 4
gen --valid $N --seed 25 --max-tokens 3 --prefix br
readers_start
worker_start w0 --set model.path="$TINY"
feed_start 50 0.5
for _ in $(seq 1 300); do grep -q "partitions assigned" "$T/w0.log" && break; sleep 0.1; done
sleep 3
a0=$(answered)
scripts/kafka-local.sh stop --keep-data >"$T/kafka-stop.log" 2>&1 || fail "broker stop failed"
note "broker stopped after $a0 answered"
sleep 20
worker_alive w0 || fail "the worker died while the broker was down"
scripts/kafka-local.sh start >"$T/kafka-restart.log" 2>&1 || fail "broker restart failed: $(tail -n 5 "$T/kafka-restart.log")"
note "broker started again"
feed_wait
wait_answered $N 240
worker_alive w0 || fail "the worker died after the broker came back"
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM after the outage"
readers_stop
check --max-dup $N || fail "requests lost across a broker restart"
echo "PASS: broker down 20 s at $a0/$N answered: lost 0, worker recovered by itself"
