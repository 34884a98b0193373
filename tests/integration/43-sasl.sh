#!/usr/bin/env bash
# 43-sasl: a worker against the local broker's SASL_PLAINTEXT/PLAIN listener
# (KRILL_KAFKA_SASL=USER:PASS, scripts/kafka-local.sh).
#
# Right password: requests answered, /healthz 200, krill_kafka_connected 1.
# Wrong password: the worker stays up (it does not exit: librdkafka keeps retrying and
# recovers by itself once the credentials are accepted), /healthz answers 503 with
# "authentication failed" well within worker.health_grace_ms, krill_kafka_connected 0,
# krill_kafka_errors_total{kind="authentication"} > 0.
# Neither password appears in any output: worker logs (debug), /metrics, /healthz,
# --print-config, results.
[ -f tests/integration/lib/common.sh ] || { echo "SKIP: tests/integration/lib/common.sh missing (it comes with the worker)"; exit 77; }
source tests/integration/lib/common.sh
need_bins
tiny_model

pass="krill-sasl-$(date +%s%N | sha256sum | cut -c1-16)"
wrong="krill-wrong-$(date +%s%N | sha256sum | cut -c1-16)"
export KRILL_KAFKA_SASL="krill:$pass"
broker_start 2
SASL=$(scripts/kafka-local.sh status 2>/dev/null | sed -n 's/^sasl=//p')
[ -n "$SASL" ] || fail "kafka-local.sh printed no sasl= address with KRILL_KAFKA_SASL set"
note "SASL_PLAINTEXT listener $SASL"

# sasl_sets PASSWORD: SA = the settings of a SASL/PLAIN client of the SASL listener
sasl_sets() {
  SA=(--set kafka.brokers="$SASL" --set 'kafka.properties+=security.protocol=SASL_PLAINTEXT'
      --set 'kafka.properties+=sasl.mechanisms=PLAIN' --set 'kafka.properties+=sasl.username=krill'
      --set "kafka.properties+=sasl.password=$1")
}

# 1. --print-config with both passwords: keys shown, values redacted
sasl_sets "$pass"
"$B/krill-worker" "${SA[@]}" --set model.path="$TINY" --print-config >"$T/print-config.txt" 2>&1 ||
  fail "--print-config failed: $(tail -n 3 "$T/print-config.txt")"
sasl_sets "$wrong"
"$B/krill-worker" "${SA[@]}" --set model.path="$TINY" --print-config >"$T/print-config-wrong.txt" 2>&1 ||
  fail "--print-config failed: $(tail -n 3 "$T/print-config-wrong.txt")"
grep -q 'sasl.password=<redacted>' "$T/print-config.txt" || fail "--print-config does not show sasl.password redacted"

# 2. right password: answered, healthy, connected
gen --valid 10 --seed 43 --max-tokens 3
enqueue "$T/requests.jsonl"
readers_start
port=$(free_port)
sasl_sets "$pass"
worker_start w1 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port --set log.level=debug "${SA[@]}"
wait_answered 10 120
deadline=$((SECONDS + 30))
until http "http://127.0.0.1:$port/healthz" >"$T/healthz-right.txt"; [ "$(head -n1 "$T/healthz-right.txt")" = 200 ]; do
  [ $SECONDS -lt $deadline ] || fail "right password: /healthz is not 200: $(cat "$T/healthz-right.txt")"
  sleep 0.3
done
http "http://127.0.0.1:$port/metrics" >"$T/metrics-right.txt"
grep -qx 'krill_kafka_connected 1' "$T/metrics-right.txt" || fail "right password: krill_kafka_connected is not 1"
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "right password: worker exit status $WRC after SIGTERM"
readers_stop
check >"$T/check.log" 2>&1 || fail "results check: $(cat "$T/check.log")"
note "right password: 10 answered, /healthz 200, connected 1"

# 3. wrong password: 503 with the reason within the grace, not connected, still running
grace_ms=20000
port=$(free_port)
t0=$SECONDS
sasl_sets "$wrong"
worker_start w2 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port --set log.level=debug \
  --set worker.health_grace_ms=$grace_ms "${SA[@]}"
deadline=$((SECONDS + grace_ms / 1000))
while :; do
  worker_alive w2 || fail "wrong password: the worker exited (it should stay up and report 503)"
  http "http://127.0.0.1:$port/healthz" >"$T/healthz-wrong.txt"
  [ "$(head -n1 "$T/healthz-wrong.txt")" = 503 ] && grep -q 'authentication failed' "$T/healthz-wrong.txt" && break
  [ $SECONDS -lt $deadline ] || fail "wrong password: no 503 'authentication failed' within the ${grace_ms} ms grace: $(cat "$T/healthz-wrong.txt")"
  sleep 0.3
done
note "wrong password: /healthz after $((SECONDS - t0)) s: $(tail -n +2 "$T/healthz-wrong.txt")"
[ "$(tail -n +2 "$T/healthz-wrong.txt" | wc -l)" = 1 ] || fail "/healthz body is not one line"
http "http://127.0.0.1:$port/metrics" >"$T/metrics-wrong.txt"
grep -qx 'krill_kafka_connected 0' "$T/metrics-wrong.txt" || fail "wrong password: krill_kafka_connected is not 0"
grep -q '^krill_kafka_errors_total{kind="authentication"} [1-9]' "$T/metrics-wrong.txt" ||
  fail "wrong password: no krill_kafka_errors_total{kind=\"authentication\"}"
worker_stop w2 TERM
[ "$WRC" = 0 ] || fail "wrong password: worker exit status $WRC after SIGTERM"

# 4. neither password anywhere the worker wrote or answered
leaks=$(grep -l -F -e "$pass" -e "$wrong" "$T"/*.log "$T"/*.txt "$T"/*.jsonl 2>/dev/null)
[ -z "$leaks" ] || fail "a SASL password leaked into: $leaks"
[ "$(grep -c . "$T/w2.log")" -gt 5 ] || fail "the wrong-password worker's log is nearly empty (the check would prove nothing)"
note "no password in $(cat "$T"/w1.log "$T"/w2.log | wc -l) log lines, /metrics, /healthz, --print-config"
note "PASS"
