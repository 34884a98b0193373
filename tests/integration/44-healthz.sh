#!/usr/bin/env bash
# 44-healthz: /healthz tells the truth about Kafka.
#
# A worker starts while its broker is down (stopped with --keep-data: the port is
# closed, the topics kept). With worker.health_grace_ms=5000, /healthz answers 503
# "no broker reachable" once the grace has passed (not before), krill_kafka_connected
# is 0 and krill_kafka_errors_total counts transport / all_brokers_down errors. Then
# the broker comes back on the same port: /healthz turns 200 once the consumer has
# joined the group, krill_kafka_connected is 1, and requests are answered.
[ -f tests/integration/lib/common.sh ] || { echo "SKIP: tests/integration/lib/common.sh missing (it comes with the worker)"; exit 77; }
source tests/integration/lib/common.sh
need_bins
tiny_model
broker_start 2
scripts/kafka-local.sh stop --keep-data >"$T/kafka-stop.log" 2>&1 || fail "cannot stop the broker: $(cat "$T/kafka-stop.log")"
KAFKA_UP=0
(exec 3<>"/dev/tcp/${BROKERS%:*}/${BROKERS##*:}") 2>/dev/null && fail "the broker port still answers after stop"

# 1. no broker: 503 "no broker reachable" after the grace, not before
grace_s=5
port=$(free_port)
t0=$SECONDS
worker_start w1 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port --set worker.health_grace_ms=$((grace_s * 1000))
while :; do
  worker_alive w1 || fail "the worker exited without a broker (it should wait and report 503)"
  http "http://127.0.0.1:$port/healthz" >"$T/healthz-down.txt"
  code=$(head -n1 "$T/healthz-down.txt")
  [ "$code" = 200 ] && fail "/healthz is 200 without any broker: $(tail -n +2 "$T/healthz-down.txt")"
  grep -q 'no broker reachable' "$T/healthz-down.txt" && break
  [ $((SECONDS - t0)) -le $((grace_s + 15)) ] ||
    fail "no 503 'no broker reachable' within $((grace_s + 15)) s: $(tail -n +2 "$T/healthz-down.txt")"
  sleep 0.3
done
waited=$((SECONDS - t0))
[ "$code" = 503 ] || fail "/healthz code $code with 'no broker reachable'"
[ $waited -ge $((grace_s - 1)) ] || fail "'no broker reachable' after ${waited} s, before the ${grace_s} s grace"
note "no broker: 503 after ${waited} s: $(tail -n +2 "$T/healthz-down.txt")"
http "http://127.0.0.1:$port/metrics" >"$T/metrics-down.txt"
grep -qx 'krill_kafka_connected 0' "$T/metrics-down.txt" || fail "no broker: krill_kafka_connected is not 0"
grep -Eq '^krill_kafka_errors_total\{kind="(transport|all_brokers_down)"\} [1-9]' "$T/metrics-down.txt" ||
  fail "no broker: no transport/all_brokers_down errors counted: $(grep krill_kafka_errors "$T/metrics-down.txt")"

# 2. the broker comes back on the same port: 200 once the consumer has joined
scripts/kafka-local.sh start >"$T/kafka-restart.out" 2>"$T/kafka-restart.log" ||
  fail "the broker did not restart: $(tail -n 3 "$T/kafka-restart.log")"
KAFKA_UP=1
t1=$SECONDS
until http "http://127.0.0.1:$port/healthz" >"$T/healthz-up.txt"; [ "$(head -n1 "$T/healthz-up.txt")" = 200 ]; do
  worker_alive w1 || fail "the worker exited after the broker came back"
  [ $((SECONDS - t1)) -le 60 ] || fail "/healthz not 200 within 60 s of the broker's return: $(tail -n +2 "$T/healthz-up.txt")"
  sleep 0.3
done
note "broker back: 200 after $((SECONDS - t1)) s: $(tail -n +2 "$T/healthz-up.txt")"
grep -q 'kafka=connected' "$T/healthz-up.txt" || fail "/healthz 200 does not say kafka=connected"
http "http://127.0.0.1:$port/metrics" >"$T/metrics-up.txt"
grep -qx 'krill_kafka_connected 1' "$T/metrics-up.txt" || fail "broker back: krill_kafka_connected is not 1"

# 3. healthy means serving
gen --valid 5 --seed 44 --max-tokens 3
readers_start
enqueue "$T/requests.jsonl"
wait_answered 5 90
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "worker exit status $WRC after SIGTERM"
readers_stop
check >"$T/check.log" 2>&1 || fail "results check: $(cat "$T/check.log")"
note "PASS"
