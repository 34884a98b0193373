#!/usr/bin/env bash
# 27-malformed: 300 malformed messages of every kind (bad types and values, missing
# fields, unsupported options, too-long prompts, truncated JSON with and without an id,
# not JSON, arrays, scalars, 200-deep nesting, bad UTF-8, broken msgpack) mixed with
# 300 valid requests, JSON and msgpack. The worker never stops; each bad message gets
# its 400 result (with the expected error code) and/or one DLQ record with the
# krill-error-code/-message/-source headers; every valid request is answered.
# Then krill-run-batch answers the same file exactly as the worker did.
source tests/integration/lib/common.sh
need_bins krill-run-batch
tiny_model
broker_start 4
gen --valid 300 --malformed 300 --seed 27 --max-tokens 4 --prefix mf --deterministic
enqueue --format mixed "$T/requests.jsonl"
readers_start
# model.seed fixed: requests without a seed are greedy here (--deterministic), so
# every answer depends only on the request.
worker_start w0 --set model.path="$TINY" --set model.seed=1234
n=$(python3 -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)['custom_id']))" "$T/expect.jsonl")
wait_answered "$n" 180
sleep 1
worker_alive w0 || fail "the worker stopped on malformed input"
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
readers_stop
check --strict-dlq || fail "malformed messages were not answered as specified"
python3 - "$T/dlq.jsonl" <<'PY' || fail "DLQ records do not carry the original message"
import json, sys
codes = {}
for l in open(sys.argv[1]):
    e = json.loads(l)
    h = e["headers"]
    codes[h["krill-error-code"]] = codes.get(h["krill-error-code"], 0) + 1
    assert h["krill-source"].startswith("krill.requests:"), h
print("DLQ codes:", codes)
assert set(codes) >= {"invalid_json", "invalid_msgpack", "not_an_object", "nesting_too_deep"}, codes
PY
"$B/krill-run-batch" -m "$TINY" --set model.seed=1234 -q -i "$T/requests.jsonl" -o "$T/batch.jsonl" 2>"$T/batch.log" \
  || fail "krill-run-batch failed: $(tail -n 5 "$T/batch.log")"
[ "$(wc -l <"$T/batch.jsonl")" = "$(wc -l <"$T/requests.jsonl")" ] || fail "krill-run-batch did not answer every line"
python3 "$LIB/compare_answers.py" "$T/results.jsonl" "$T/batch.jsonl" --ids "$T/expect.jsonl" \
  || fail "krill-run-batch and the worker answered differently"
echo "PASS: 300 malformed + 300 valid: worker kept going, all answered; krill-run-batch agrees"
