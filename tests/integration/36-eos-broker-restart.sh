#!/usr/bin/env bash
# 36-eos-broker-restart: delivery.mode exactly_once. The broker is killed (kill -9) in
# the middle of 1,500 requests and started again 15 s later on the same data. The
# worker's transaction calls retry within delivery.transaction_timeout_ms; a transaction
# that cannot commit is aborted and the partitions rewind; an error librdkafka declares
# fatal makes the worker exit 4, and the test restarts it with the same worker.id as a
# supervisor (Kubernetes, compose `restart:`) would — any other exit status fails.
# A read_committed reader sees lost 0, dup 0, and the last worker stops cleanly.
source tests/integration/lib/common.sh
N=1500
eos_begin $N 36 eb 3
WORKER_SETS=(--set model.path="$TINY" --set worker.id=eb --set delivery.mode=exactly_once)
worker_start w0
cur=w0 restarts=0
feed_start 50 0.5
wait_assigned w0
sleep 3
a0=$(answered)
pid=$(cat "$KRILL_KAFKA_STATE/pid" 2>/dev/null)
[ -n "$pid" ] || fail "cannot find the broker's pid in $KRILL_KAFKA_STATE/pid"
kill -KILL "$pid"
# what `kafka-local.sh stop --keep-data` leaves, so that start reuses the data
touch "$KRILL_KAFKA_STATE/kept"; rm -f "$KRILL_KAFKA_STATE/pid"
note "broker killed (-9, pid $pid) after $a0 answered"
# supervise: a worker that exits 4 (fatal transactional error) is restarted; nothing else may stop it
supervise() {
  worker_alive "$cur" && return 0
  local p=${WPID[$cur]} rc
  wait "$p"; rc=$?; unset "WPID[$cur]"
  [ "$rc" = 4 ] || fail "worker $cur exited $rc (only 4, fatal, is expected after a broker crash)"
  restarts=$((restarts + 1)); note "worker $cur exited 4: $(grep -m1 -o 'fatal Kafka error.*' "$T/$cur.log" | cut -c1-200)"
  cur=w$restarts; worker_start "$cur"
}
for _ in $(seq 1 30); do supervise; sleep 0.5; done
scripts/kafka-local.sh start >"$T/kafka-restart.log" 2>&1 || fail "broker restart failed: $(tail -n 5 "$T/kafka-restart.log")"
note "broker started again"
deadline=$((SECONDS + 240))
while [ "$(answered)" -lt $N ]; do
  [ $SECONDS -lt $deadline ] || fail "timed out: $(answered) of $N answered"
  supervise; sleep 0.5
done
feed_wait
sleep 2
supervise
worker_stop "$cur" TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM after the outage"
readers_stop
grep -h "transaction aborted" "$T"/w*.log | head -n 3
check --max-dup 0 || fail "not exactly once across a broker kill -9"
echo "PASS: broker kill -9 at $a0/$N answered, restarted 15 s later: lost 0, dup 0 ($restarts worker restarts after exit 4)"
