#!/usr/bin/env bash
# 17-gemma3-worker: a krill-worker on the real Gemma 3 270M (gemma3: QK-norm, GeGLU,
# sliding-window local layers, 262k SentencePiece vocabulary, Gemma chat turns) through
# the local broker: chat (with a system message folded into the first user turn) and
# completion requests, JSON and msgpack, greedy; every request answered once, a chat
# answer stops at <end_of_turn> (finish_reason "stop" or "length", never the turn marker
# in the text), and every answer equals krill-run-batch's for the same request.
# Skips when the model is absent (scripts/fetch-model.sh gemma3-270m: Google's Gemma
# terms, fetched by whoever runs it; `make test` does not fetch it).
source tests/integration/lib/common.sh
need_bins krill-run-batch
MODEL=${KRILL_GEMMA3_PATH:-$root/models/gemma-3-270m-q4_k_m.gguf}
[ -f "$MODEL" ] || skip "Gemma 3 model $MODEL missing (scripts/fetch-model.sh gemma3-270m)"
broker_start 2
python3 - "$T/requests.jsonl" "$T/expect.jsonl" <<'PY'
import json, sys
reqs = [
    {"custom_id": "g-chat", "url": "/v1/chat/completions", "method": "POST",
     "body": {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12,
              "temperature": 0}},
    {"custom_id": "g-sys", "body": {"messages": [{"role": "system", "content": "Answer with one word."},
                                               {"role": "user", "content": "Name a primary color."}],
                                  "max_tokens": 8, "temperature": 0}},
    {"custom_id": "g-comp", "body": {"prompt": "The capital of Japan is", "max_tokens": 6, "temperature": 0}},
    {"custom_id": "g-long", "body": {"prompt": "Once upon a time, " * 40, "max_tokens": 4, "temperature": 0}},
    {"custom_id": "g-multi", "body": {"messages": [{"role": "user", "content": "Hi"},
                                                 {"role": "assistant", "content": "Hello!"},
                                                 {"role": "user", "content": "Say bye."}], "max_tokens": 8,
                                    "temperature": 0}},
]
with open(sys.argv[1], "w") as r, open(sys.argv[2], "w") as e:
    for q in reqs:
        r.write(json.dumps(q) + "\n")
        e.write(json.dumps({"custom_id": q["custom_id"], "expect": "200"}) + "\n")
PY
enqueue --format mixed "$T/requests.jsonl"
readers_start
worker_start w0 --set model.path="$MODEL"
wait_answered 5 300
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC"
readers_stop
check --strict-dlq || fail "answers are not as expected"
python3 - "$T/results.jsonl" <<'PY' || fail "Gemma 3 answers are malformed"
import json, sys
for l in open(sys.argv[1]):
    v = json.loads(l)["value"]
    b = v["response"]["body"]
    c = b["choices"][0]
    text = c["message"]["content"] if "message" in c else c["text"]
    print("  %-8s %-6s %r" % (v["custom_id"], c["finish_reason"], text))
    assert "<end_of_turn>" not in text and "<start_of_turn>" not in text, text
    assert c["finish_reason"] in ("stop", "length"), c
    assert b["usage"]["prompt_tokens"] > 0 and b["usage"]["completion_tokens"] > 0, b["usage"]
PY
"$B/krill-run-batch" -m "$MODEL" -q -i "$T/requests.jsonl" -o "$T/batch.jsonl" 2>"$T/batch.log" \
  || fail "krill-run-batch failed: $(tail -n 3 "$T/batch.log")"
python3 "$LIB/compare_answers.py" "$T/results.jsonl" "$T/batch.jsonl" --ids "$T/expect.jsonl" \
  || fail "the worker and krill-run-batch answered differently"
echo "PASS: Gemma 3 270M through Kafka: one answer each, same as krill-run-batch"
