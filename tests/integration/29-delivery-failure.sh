#!/usr/bin/env bash
# 29-delivery-failure: answers that cannot be delivered are never skipped. A worker
# whose results topic does not exist (auto-creation is off) retries each record, then
# stops with exit status 3 without committing past them; a worker with the right
# topic then answers every request (lost 0, dup 0).
source tests/integration/lib/common.sh
need_bins
tiny_model
N=60
broker_start 2
gen --valid $N --seed 29 --max-tokens 2 --prefix df
enqueue "$T/requests.jsonl"
readers_start
worker_start w0 --set model.path="$TINY" --set kafka.topic_results=krill.no-such-topic \
  --set 'kafka.properties+=producer.message.timeout.ms=500' --set worker.drain_timeout_ms=2000
for _ in $(seq 1 900); do worker_alive w0 || break; sleep 0.1; done
worker_alive w0 && fail "the worker kept running with undeliverable results"
wait "${WPID[w0]}"; rc=$?; unset "WPID[w0]"
[ "$rc" = 3 ] || fail "exit status $rc, expected 3 (undeliverable answers)"
grep -q "could not be delivered" "$T/w0.log" || fail "no 'could not be delivered' in the log"
note "w0 stopped with exit status 3 after retrying"
[ "$(answered)" = 0 ] || fail "answers appeared on the results topic from the failing worker"
worker_start w1 --set model.path="$TINY"
wait_answered $N 120
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "w1 exited $WRC"
readers_stop
check --max-dup 0 || fail "requests lost after a delivery failure"
echo "PASS: undeliverable answers stopped the worker (exit 3); the next one answered all $N"
