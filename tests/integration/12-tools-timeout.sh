#!/usr/bin/env bash
# 12-tools-timeout: the Kafka tools never leave a user waiting without a word.
# krill-enqueue --timeout 3, against a closed port and to a topic that does not exist
# (the local broker does not create topics on demand), exits 1 within ~5 s with one
# line that names the cause and the way out (-b / --create-topics); with
# --create-topics the same file is delivered. krill-results' librdkafka lines come out
# in krill's log format (log.h: "level=error fn=librdkafka msg=..."), never as
# librdkafka's raw "%3|...|FAIL|..." lines.
source tests/integration/lib/common.sh
need_bins
DEAD=127.0.0.1:$(free_port) # nothing listens there
echo '{"custom_id":"t12-1","body":{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}}' >"$T/one.jsonl"

# enqueue_bounded NAME PATTERN ARGS...: exit 1 within 6 s, stderr exactly one line matching PATTERN
enqueue_bounded() {
  local name=$1 pat=$2; shift 2
  local t0 t1 rc lines
  t0=$(date +%s%N)
  "$B/krill-enqueue" --timeout 3 "$@" "$T/one.jsonl" >"$T/$name.out" 2>"$T/$name.err"
  rc=$?
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000))
  lines=$(wc -l <"$T/$name.err")
  note "$name: rc=$rc in ${ms} ms: $(cat "$T/$name.err")"
  [ "$rc" = 1 ] || fail "$name: exit status $rc, want 1"
  [ "$ms" -lt 6000 ] || fail "$name: took ${ms} ms with --timeout 3"
  [ "$lines" = 1 ] || fail "$name: $lines lines on stderr, want one message"
  grep -qE -- "$pat" "$T/$name.err" || fail "$name: the message does not say /$pat/"
}

enqueue_bounded closed-port "no Kafka broker answered at $DEAD within 3 s.*check -b" -b "$DEAD" -t krill.requests

broker_start 1
enqueue_bounded missing-topic "topic t12-missing does not exist on .*--create-topics" -b "$BROKERS" -t t12-missing
"$B/krill-enqueue" -q --timeout 10 --create-topics --partitions 1 -b "$BROKERS" -t t12-missing "$T/one.jsonl" \
  2>"$T/create.err" || fail "--create-topics did not deliver: $(cat "$T/create.err")"
grep -q "1 records acknowledged" "$T/create.err" || fail "--create-topics: $(cat "$T/create.err")"

# krill-results against the closed port: librdkafka complains, through krill's logger
"$B/krill-results" -q -b "$DEAD" -t krill.results -g t12 --idle-timeout 2 >"$T/res.out" 2>"$T/res.err"
note "krill-results stderr: $(head -n 3 "$T/res.err")"
if grep -qE '^%[0-7]\|' "$T/res.err"; then fail "krill-results printed raw librdkafka lines: $(grep -m1 -E '^%[0-7]\|' "$T/res.err")"; fi
grep -qE '^[0-9T:.-]+Z level=error fn=librdkafka msg=".*Connect to .*" handle=rdkafka#consumer-[0-9]+ fac=' "$T/res.err" \
  || fail "krill-results: no librdkafka line in krill's log format"
echo "PASS: krill-enqueue gives up within its --timeout with one message and a hint; krill-results logs through log.h"
