#!/usr/bin/env bash
# 35-eos-kill9: delivery.mode exactly_once. kill -9 the worker at 3 random moments
# during 2,000 requests (JSON and msgpack, 200 of them malformed), restarting it each
# time with the same worker.id (so its transactional.id fences the dead one and aborts
# its open transaction), then SIGTERM: a read_committed reader sees every request
# answered exactly once — lost 0, dup 0, unexpected 0 — and every malformed message
# answered once (its 400 result and/or exactly one DLQ record). KRILL_TEST_SEED
# reproduces the kill moments.
source tests/integration/lib/common.sh
test_seed
N=2000 BAD=200 QH=64
eos_begin $((N - BAD)) 35 e9 2 --malformed $BAD
WORKER_SETS=(--set model.path="$TINY" --set worker.queue_high=$QH --set worker.queue_low=$((QH / 2))
             --set worker.id=eos --set delivery.mode=exactly_once --set delivery.transaction_timeout_ms=10000)
n=$(python3 -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)['custom_id']))" "$T/expect.jsonl")
worker_start w0
feed_start 50 0.5
kill9_rounds 3
feed_wait
wait_answered "$n" 300
sleep 2
worker_stop "w$kills" TERM
[ "$WRC" = 0 ] || fail "last worker exited $WRC on SIGTERM"
readers_stop
grep -h "transaction aborted\|fenced" "$T"/w*.log | head -n 5
check --max-dup 0 --max-unexpected 0 --strict-dlq || fail "not exactly once after $kills kills"
echo "PASS: $kills kill -9s in exactly-once mode: lost 0, dup 0, unexpected 0"
