#!/usr/bin/env bash
# 22-default-model: the whole path with the real default model (SmolLM2-135M-Instruct)
# on the local broker: chat and completion requests, JSON and msgpack, greedy and
# seeded, plus invalid ones. Greedy answers to well-known questions name the right
# city; every answer equals krill-run-batch's for the same request (same tokens through
# Kafka as through the engine directly); errors carry the expected codes.
source tests/integration/lib/common.sh
need_bins krill-run-batch
MODEL=${KRILL_MODEL_PATH:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || skip "default model $MODEL missing (scripts/fetch-model.sh)"
broker_start 2
python3 - "$T/requests.jsonl" "$T/expect.jsonl" <<'PY'
import json, sys
reqs = [
    ({"custom_id": "dm-paris", "url": "/v1/chat/completions", "method": "POST",
      "body": {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 8, "temperature": 0}}, "200"),
    ({"custom_id": "dm-tokyo", "body": {"prompt": "The capital of Japan is", "max_tokens": 4, "temperature": 0}}, "200"),
    ({"custom_id": "dm-sys", "body": {"messages": [{"role": "system", "content": "You are a concise assistant."},
      {"role": "user", "content": "Name a primary color."}], "max_tokens": 6, "temperature": 0}}, "200"),
    ({"custom_id": "dm-seed1", "body": {"messages": [{"role": "user", "content": "Write a haiku about the sea."}],
      "max_tokens": 8, "temperature": 0.8, "top_p": 0.9, "seed": 11}}, "200"),
    ({"custom_id": "dm-seed2", "body": {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.0, "top_k": 40, "seed": 5}}, "200"),
    ({"custom_id": "dm-stop", "body": {"prompt": "1, 2, 3, 4,", "max_tokens": 8, "temperature": 0, "stop": [" 7"]}}, "200"),
    ({"custom_id": "dm-bad-type", "body": {"prompt": "x", "temperature": "hot"}}, "400", "invalid_type"),
    ({"custom_id": "dm-bad-model", "body": {"prompt": "x", "model": "gpt-9"}}, "404", "model_not_found"),
]
with open(sys.argv[1], "w") as r, open(sys.argv[2], "w") as e:
    for item in reqs:
        r.write(json.dumps(item[0]) + "\n")
        x = {"custom_id": item[0]["custom_id"], "expect": item[1]}
        if len(item) > 2: x["code"] = item[2]
        e.write(json.dumps(x) + "\n")
PY
enqueue --format mixed "$T/requests.jsonl"
readers_start
worker_start w0 --set model.path="$MODEL"
wait_answered 8 300
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC"
readers_stop
check --strict-dlq || fail "answers are not as expected"
python3 - "$T/results.jsonl" <<'PY' || fail "greedy answers do not name the right cities"
import json, sys
got = {}
for l in open(sys.argv[1]):
    v = json.loads(l)["value"]
    b = v["response"]["body"]
    if v["response"]["status_code"] == 200:
        c = b["choices"][0]
        got[v["custom_id"]] = c["message"]["content"] if "message" in c else c["text"]
for k, t in sorted(got.items()):
    print("  %-9s %r" % (k, t))
assert "Paris" in got["dm-paris"], got["dm-paris"]
assert "Tokyo" in got["dm-tokyo"], got["dm-tokyo"]
assert " 7" not in got["dm-stop"], got["dm-stop"]
PY
"$B/krill-run-batch" -m "$MODEL" -q -i "$T/requests.jsonl" -o "$T/batch.jsonl" 2>"$T/batch.log" \
  || fail "krill-run-batch failed: $(tail -n 3 "$T/batch.log")"
python3 "$LIB/compare_answers.py" "$T/results.jsonl" "$T/batch.jsonl" --ids "$T/expect.jsonl" \
  || fail "the worker and krill-run-batch answered differently"
echo "PASS: default model through Kafka: right answers, same as krill-run-batch"
