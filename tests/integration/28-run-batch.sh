#!/usr/bin/env bash
# 28-run-batch: krill-run-batch without Kafka: every line of a file gets one answer
# (valid ones 200, bad ones an error line with their custom_id or <file>:<line>), and
# memory stays bounded by the read-ahead window: 20x more lines must not need much
# more memory (peak RSS of 1,000 vs 20,000 lines).
source tests/integration/lib/common.sh
[ -x "$B/krill-run-batch" ] || skip "$B/krill-run-batch is not built"
[ -x /usr/bin/time ] || skip "/usr/bin/time (GNU time) not found"
tiny_model
python3 "$LIB/gen_requests.py" --valid 950 --malformed 50 --seed 28 --max-tokens 1 --prefix rb \
  "$T/small.jsonl" "$T/expect.jsonl"
python3 "$LIB/gen_requests.py" --valid 20000 --seed 29 --max-tokens 1 --prefix rb2 "$T/big.jsonl" "$T/expect-big.jsonl"
run() { # in out -> peak RSS in kB (under ASan, its quarantine of freed memory would count)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0 /usr/bin/time -f %M -o "$T/rss" "$B/krill-run-batch" -m "$TINY" -q --window 64 -i "$1" -o "$2" 2>"$T/rb.log" \
    || fail "krill-run-batch failed: $(tail -n 5 "$T/rb.log")"
  cat "$T/rss"
}
rss_small=$(run "$T/small.jsonl" "$T/small.out")
rss_big=$(run "$T/big.jsonl" "$T/big.out")
note "peak RSS: 1,000 lines ${rss_small} kB, 20,000 lines ${rss_big} kB"
[ "$(wc -l <"$T/small.out")" = 1000 ] || fail "not one answer per line (small)"
[ "$(wc -l <"$T/big.out")" = 20000 ] || fail "not one answer per line (big)"
# answers in the envelope-less form: wrap for the checker
python3 - "$T/small.out" "$T/small.env" <<'PY'
import json, sys
with open(sys.argv[2], "w") as o:
    for l in open(sys.argv[1]):
        o.write(json.dumps({"topic": "file", "partition": 0, "offset": 0, "headers": {"krill-source": "file:0:0"},
                            "value": json.loads(l)}) + "\n")
PY
# lines without any id are answered under "<file>:<line>" (unknown to the checker)
noid=$(grep -c '"custom_id": null' "$T/expect.jsonl")
[ "$(grep -c '"custom_id":"small.jsonl:' "$T/small.out")" = "$noid" ] || fail "lines without an id not answered as <file>:<line>"
python3 "$LIB/check_results.py" "$T/expect.jsonl" "$T/small.env" --max-unexpected "$noid" --quiet || fail "answers of the small file are wrong"
[ $((rss_big - rss_small)) -lt 30000 ] || fail "memory grew with the file: ${rss_small} kB -> ${rss_big} kB"
echo "PASS: one answer per line; peak RSS ${rss_small} kB vs ${rss_big} kB for 20x the lines"
