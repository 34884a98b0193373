#!/usr/bin/env bash
# 20-kafka-local: scripts/kafka-local.sh runs a real broker that librdkafka (Debian's
# 2.0.2, through kcat) can use: start/status/second start/topics/stop --keep-data and a
# restart on the kept data/stale state/stop; an idempotent produce + group consume.
source tests/integration/lib/common.sh
command -v kcat >/dev/null 2>&1 || skip "kcat not found (scripts/setup.sh installs it)"
broker_start 3
s=scripts/kafka-local.sh

out=$($s status 2>/dev/null) || fail "status says not running"
[ "$(echo "$out" | tail -n1)" = "$BROKERS" ] || fail "status did not print the address last: $out"
out=$($s start 2>&1) || fail "a second start failed: $out"
echo "$out" | grep -q "already running" || fail "a second start did not say 'already running': $out"
[ "$(echo "$out" | tail -n1)" = "$BROKERS" ] || fail "second start did not print the address last"

# topics: 3 partitions each, idempotent creation
$s topics --partitions 3 >/dev/null 2>&1 || fail "topics (again) failed"
md=$(kcat -L -b "$BROKERS" 2>&1)
for t in krill.requests krill.results krill.dlq krill.stats; do
  echo "$md" | grep -q "topic \"$t\" with 3 partitions" || fail "topic $t missing or not 3 partitions: $md"
done
echo "$md" | grep -q "127.0.0.1:$KRILL_KAFKA_PORT" || fail "broker does not advertise 127.0.0.1"

# idempotent produce (acks=all) and a cooperative-sticky group consume
seq 1 300 | sed 's/^/m-/' | kcat -P -b "$BROKERS" -t krill.requests -X enable.idempotence=true -X acks=all 2>"$T/kcat-p.log" \
  || fail "kcat produce failed: $(cat "$T/kcat-p.log")"
n=$(timeout 30 kcat -b "$BROKERS" -G g1 -X partition.assignment.strategy=cooperative-sticky \
      -X auto.offset.reset=earliest -e -q krill.requests 2>/dev/null | grep -c '^m-')
[ "$n" = 300 ] || fail "group consumer read $n of 300"
note "produce/consume through librdkafka $(pkg-config --modversion rdkafka 2>/dev/null): 300/300"

# stop --keep-data, start again on the same data
$s stop --keep-data >/dev/null 2>&1 || fail "stop --keep-data failed"
$s status >/dev/null 2>&1 && fail "status says running after stop"
$s start >"$T/restart.log" 2>&1 || fail "restart on kept data failed: $(cat "$T/restart.log")"
n=$(timeout 30 kcat -C -b "$BROKERS" -t krill.requests -e -q 2>/dev/null | grep -c '^m-')
[ "$n" = 300 ] || fail "after restart on kept data: $n of 300 records"

# a stale pid file (the JVM killed) is cleaned up by the next start
kill -KILL "$(cat "$KRILL_KAFKA_STATE/pid")"; sleep 1
$s status >/dev/null 2>&1 && fail "status says running after kill -9"
$s start >"$T/stale.log" 2>&1 || fail "start over stale state failed: $(cat "$T/stale.log")"
grep -q "stale" "$T/stale.log" || fail "start did not report the stale state"

$s stop >/dev/null 2>&1 || fail "stop failed"
KAFKA_UP=0
[ -e "$KRILL_KAFKA_STATE" ] && fail "stop left its data in $KRILL_KAFKA_STATE"
$s status >/dev/null 2>&1 && fail "status after stop"
echo "PASS: kafka-local lifecycle, topics, produce/consume"
