#!/usr/bin/env bash
# 15-logprobs-cli.sh — logprobs and logit-free constraints through krill-generate on the
# default model (the values themselves are checked against transformers in
# tests/unit/test_logprobs.c):
#   - --logprobs N prints one JSON line per generated token: its id, a log-probability
#     <= 0, N alternatives sorted descending; greedy picks the most likely one, whose
#     value is the chosen token's;
#   - under a grammar the chosen token's value is still reported (it may be absent from
#     the alternatives: they are the model's, before the mask) and the text obeys it;
#   - the same run twice gives identical lines (deterministic);
#   - --logprobs 21 is a usage error naming the option.
# Needs the default model: else skip (77).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${KRILL_BUILD:-build}
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$M" ] || { echo "SKIP: $M missing (scripts/fetch-model.sh)"; exit 77; }
[ -x "$B/krill-generate" ] || { echo "FAIL: $B/krill-generate is not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

"$B/krill-generate" -m "$M" --threads 2 -p "The capital of France is" -n 8 --logprobs 5 >"$tmp/a.out" 2>"$tmp/a.err"
check "krill-generate --logprobs 5 runs" $?
python3 - "$tmp/a.err" 8 5 greedy <<'PY'
import json, math, sys
lines = [json.loads(l[len("logprob "):]) for l in open(sys.argv[1]) if l.startswith("logprob ")]
n, k, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
assert 1 <= len(lines) <= n, f"{len(lines)} lines"
for i, t in enumerate(lines):
    assert t["index"] == i
    assert t["logprob"] <= 0.0 and math.isfinite(t["logprob"])
    top = t["top"]
    assert len(top) == k, top
    vals = [v for _, v in top]
    assert vals == sorted(vals, reverse=True), vals
    assert sum(math.exp(v) for v in vals) <= 1.0 + 1e-5
    if mode == "greedy":
        assert top[0][1] - t["logprob"] < 1e-6, (t, "greedy did not pick the most likely token")
        if len(top) > 1 and top[0][1] > top[1][1]:
            assert top[0][0] == t["id"], t
    else:
        ids = [i for i, _ in top]
        if t["id"] in ids:
            assert abs(dict(top)[t["id"]] - t["logprob"]) < 1e-6
print(f"{len(lines)} tokens")
PY
check "logprob lines: ids, values <= 0, sorted alternatives, greedy = the most likely" $?

"$B/krill-generate" -m "$M" --threads 2 -p "The capital of France is" -n 8 --logprobs 5 >"$tmp/b.out" 2>"$tmp/b.err"
cmp -s <(grep '^logprob ' "$tmp/a.err") <(grep '^logprob ' "$tmp/b.err") && cmp -s "$tmp/a.out" "$tmp/b.out"
check "the same run twice: identical text and logprobs" $?

"$B/krill-generate" -m "$M" --threads 2 --chat "Which city is the capital of France?" -n 8 --logprobs 3 \
  --choice '["Berlin", "Madrid", "Rome"]' >"$tmp/c.out" 2>"$tmp/c.err"
grep -qxE 'Berlin|Madrid|Rome' "$tmp/c.out" && grep -q "finish stop" "$tmp/c.err" \
  && python3 - "$tmp/c.err" 8 3 constrained <<'PY'
import json, sys, math
lines = [json.loads(l[len("logprob "):]) for l in open(sys.argv[1]) if l.startswith("logprob ")]
assert lines and all(t["logprob"] <= 0 and math.isfinite(t["logprob"]) for t in lines)
assert all(len(t["top"]) == 3 for t in lines)
PY
r=$?
check "a choice list: one of the strings, logprobs of what was chosen ($(cat "$tmp/c.out"))" $r

"$B/krill-generate" -m "$M" -p x --logprobs 21 >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
[ $rc = 2 ] && grep -q -- "--logprobs" "$tmp/d.err"
check "--logprobs 21: usage error naming the option (exit $rc)" $?

echo "$fails failed"
[ $fails = 0 ]
