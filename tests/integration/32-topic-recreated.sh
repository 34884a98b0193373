#!/usr/bin/env bash
# 32-topic-recreated: the request topic is deleted and recreated (same name) under a
# running worker: its offsets start again at 0, below the highest the worker has seen.
# w1 refreshes metadata only every 300 s (librdkafka's default, the issue's case), so
# it does not see the deletion: its fetch position falls out of range, is reset to the
# beginning, and the offsets go backwards — it must start a new generation of the
# partition (WARN, krill_partition_resets_total) and answer every request of the new
# topic. A restart (w2) resumes at the new topic's offsets (nothing skipped). Lost 0,
# dup 0.
source tests/integration/lib/common.sh
need_bins
tiny_model
broker_start 1
: >"$T/expect.jsonl"
# phase NAME N: N fresh requests (ids NAME-*) enqueued, their expectations recorded.
phase() { gen_more "$1" "$2" && enqueue "$T/$1.jsonl"; }
# recreate: delete krill.requests and create it again (retried while the broker still
# reports the old one).
recreate() {
  scripts/kafka-local.sh delete krill.requests >>"$T/admin.log" 2>&1 || fail "delete failed: $(tail -n 3 "$T/admin.log")"
  local i
  for i in $(seq 1 20); do
    scripts/kafka-local.sh topics --partitions 1 krill.requests >"$T/create.log" 2>&1 || fail "create failed: $(cat "$T/create.log")"
    grep -q "created krill.requests" "$T/create.log" && { note "krill.requests recreated"; return 0; }
    sleep 0.5
  done
  fail "krill.requests was not recreated: $(cat "$T/create.log")"
}
metrics_port=$(free_port)
readers_start
WORKER_SETS=(--set model.path="$TINY" --set metrics.listen=127.0.0.1:$metrics_port)
worker_start w1 --set 'kafka.properties+=consumer.topic.metadata.refresh.interval.ms=300000'
phase a 30
wait_answered 30 60
note "30 answered; recreating the request topic under the worker"
recreate
phase b 20 # offsets 0..19 of the new topic, below the 30 seen before
wait_answered 50 45
grep -q 'partition offsets went backwards' "$T/w1.log" || fail "no WARN about the new generation in the log"
curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$T/metrics.txt" || fail "no /metrics"
grep -Eq '^krill_partition_resets_total\{topic="krill.requests"\} [1-9]' "$T/metrics.txt" ||
  fail "krill_partition_resets_total not counted: $(grep resets "$T/metrics.txt")"
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
note "restart: 25 more requests at offsets 20..44 of the new topic"
phase c 25
worker_start w2
wait_answered 75 60
worker_stop w2 TERM
[ "$WRC" = 0 ] || fail "second worker exited $WRC on SIGTERM"
readers_stop
check --max-dup 0 || fail "requests lost (or answered twice) across the topic's recreation"
echo "PASS: request topic recreated under a running worker and across a restart: 75 of 75 answered, lost 0"
