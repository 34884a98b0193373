#!/usr/bin/env bash
# 13-run-batch-flags: krill-run-batch as a batch tool. A file of mixed lines — one
# slow request first (400 tokens, ignore_eos), fast ones (1 token), malformed JSON and
# invalid values (answered 400 at once) — is answered:
#   - by default in completion order (the errors and fast lines overtake the slow one),
#     exit 0 although some answers are errors (as vLLM's run_batch);
#   - with --ordered in input order, also with a reorder window smaller than the file
#     (--window 4: the slow line stalls the window, the order holds);
#   - with --fail-on-error exit 1 when any answer is an error, 0 when none is;
#   - with a summary line on stderr counting the answers by status.
source tests/integration/lib/common.sh
[ -x "$B/krill-run-batch" ] || skip "$B/krill-run-batch is not built"
tiny_model
python3 - "$T/mixed.jsonl" "$T/good.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    f.write(json.dumps({"custom_id": "slow", "body": {"prompt": "Once upon", "max_tokens": 400, "ignore_eos": True}}) + "\n")
    for i in range(30):
        if i % 5 == 2:
            f.write('{"custom_id":"bad-%d","body":\n' % i)  # malformed JSON
        elif i % 5 == 4:
            f.write(json.dumps({"custom_id": "neg-%d" % i, "body": {"prompt": "x", "max_tokens": -5}}) + "\n")
        else:
            f.write(json.dumps({"custom_id": "fast-%d" % i, "body": {"prompt": "hi %d" % i, "max_tokens": 1}}) + "\n")
with open(sys.argv[2], "w") as f:
    for i in range(10):
        f.write(json.dumps({"custom_id": "good-%d" % i, "body": {"prompt": "hi %d" % i, "max_tokens": 2}}) + "\n")
PY
# 31 lines: slow + 18 fast = 19 answered 200; 6 malformed + 6 invalid = 12 answered 400
run() { # out, flags... -> exit status in $RC, stderr in $T/rb.err
  local out=$1; shift
  "$B/krill-run-batch" -m "$TINY" -q "$@" -o "$out" 2>"$T/rb.err"; RC=$?
}
ids() { python3 -c 'import json,sys; print(" ".join(json.loads(l)["custom_id"] for l in open(sys.argv[1])))' "$1"; }
want=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["custom_id"] if l.startswith("{\"custom_id\": ") else l.split("\"")[3] for l in open(sys.argv[1])))' "$T/mixed.jsonl")

run "$T/plain.out" -i "$T/mixed.jsonl"
[ "$RC" = 0 ] || fail "default: exit $RC with error answers, want 0: $(tail -n 3 "$T/rb.err")"
[ "$(wc -l <"$T/plain.out")" = 31 ] || fail "default: not one answer per line"
[ "$(ids "$T/plain.out")" != "$want" ] || fail "default: answers already in input order; the test cannot tell --ordered from it"
summary=$(grep '^krill-run-batch: ' "$T/rb.err" | tail -n 1)
note "summary: $summary"
[[ $summary == "krill-run-batch: 31 lines: 19 200, 12 400;"* ]] || fail "summary line '$summary', want 'krill-run-batch: 31 lines: 19 200, 12 400; ...'"

for w in "" "--window 4"; do
  run "$T/ordered.out" --ordered $w -i "$T/mixed.jsonl"
  [ "$RC" = 0 ] || fail "--ordered $w: exit $RC: $(tail -n 3 "$T/rb.err")"
  [ "$(ids "$T/ordered.out")" = "$want" ] || fail "--ordered $w: answers not in input order: $(ids "$T/ordered.out")"
  grep -q '^krill-run-batch: 31 lines: 19 200, 12 400;' "$T/rb.err" || fail "--ordered $w: summary: $(tail -n 1 "$T/rb.err")"
done
# the answers are the same, only their order differs
[ "$(sort "$T/plain.out" | python3 -c 'import json,sys; print(sorted((json.loads(l)["custom_id"], json.loads(l)["response"]["status_code"]) for l in sys.stdin))')" = \
  "$(sort "$T/ordered.out" | python3 -c 'import json,sys; print(sorted((json.loads(l)["custom_id"], json.loads(l)["response"]["status_code"]) for l in sys.stdin))')" ] \
  || fail "--ordered changed the answers"

run "$T/fail.out" --fail-on-error -i "$T/mixed.jsonl"
[ "$RC" = 1 ] || fail "--fail-on-error with error answers: exit $RC, want 1"
[ "$(wc -l <"$T/fail.out")" = 31 ] || fail "--fail-on-error: every line must still be answered"
run "$T/good.out" --fail-on-error --ordered -i "$T/good.jsonl"
[ "$RC" = 0 ] || fail "--fail-on-error without errors: exit $RC, want 0"
grep -q '^krill-run-batch: 10 lines: 10 200;' "$T/rb.err" || fail "summary of the good file: $(tail -n 1 "$T/rb.err")"
echo "PASS: --ordered keeps input order (window 4 too), --fail-on-error exits 1 only on error answers, summary by status"
