#!/usr/bin/env bash
# 11-tools-cli.sh — the one command-line shape every tool in src/tools shares (cli.h).
#
# For each tool: --help prints "usage: TOOL" on stdout and exits 0; --version prints
# "TOOL VERSION"; an unknown option and a stray operand exit 2 with "try --help"; a bad
# number exits 2 naming its option, in both the "--opt=value" and "--opt value"
# spellings, before any broker or model is touched; valid "--opt=value" and
# "--opt value" are both accepted. No broker is needed (the Kafka tools are pointed at a
# closed port where that is harmless); the runs that need the default model are skipped
# without it (scripts/setup.sh fetches it).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${KRILL_BUILD:-build}
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
V=$(cat VERSION)
DEAD=127.0.0.1:9 # nothing listens there: the Kafka tools fail on connecting, never hang on it
TOOLS="krill-enqueue krill-results krill-run-batch krill-tokenize krill-generate krill-gguf krill-bench krill-bench-slo"
for t in $TOOLS; do [ -x "$B/$t" ] || { echo "FAIL: $B/$t is not built (make build)"; exit 1; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # name, condition result
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}
# usage_error NAME PATTERN TOOL ARGS...: exit 2, PATTERN and "(try --help)" on stderr, nothing on stdout
usage_error() {
  local name=$1 pat=$2 tool=$3; shift 3
  "$B/$tool" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ $rc -eq 2 ] && grep -qF -- "$pat" "$tmp/err" && grep -q "try --help" "$tmp/err" && [ ! -s "$tmp/out" ]
  local ok=$?
  [ $ok = 0 ] || { echo "     rc=$rc stderr: $(head -c 300 "$tmp/err")"; }
  check "$tool: $name" $ok
}
# bad_number TOOL OPTION VALUE ARGS...: "OPTION=VALUE" and "OPTION VALUE" both exit 2 naming OPTION
bad_number() {
  local tool=$1 opt=$2 val=$3; shift 3
  usage_error "$opt $val: exit 2 naming the option" "$opt: '$val' is not" "$tool" "$@" "$opt" "$val"
  [[ $opt == --* ]] && usage_error "$opt=$val: exit 2 naming the option" "$opt: '$val' is not" "$tool" "$@" "$opt=$val"
}

# --- the shape every tool shares
for t in $TOOLS; do
  "$B/$t" --help >"$tmp/out" 2>"$tmp/err"; [ $? -eq 0 ] && head -n 1 "$tmp/out" | grep -q "^usage: $t " && [ ! -s "$tmp/err" ]
  check "$t: --help on stdout, exit 0" $?
  "$B/$t" -h >"$tmp/out" 2>/dev/null; [ $? -eq 0 ] && head -n 1 "$tmp/out" | grep -q "^usage: $t "; check "$t: -h" $?
  [ "$("$B/$t" --version)" = "$t $V" ]; check "$t: --version prints '$t $V'" $?
  usage_error "unknown option: exit 2" "unrecognized option" "$t" --no-such-option
done

# --- strict numbers, both spellings, checked before any broker or model
bad_number krill-results -n abc -b "$DEAD" -t t
bad_number krill-results --idle-timeout 1x -b "$DEAD" -t t
bad_number krill-enqueue --max-tokens abc -b "$DEAD" -t t /dev/null
bad_number krill-enqueue --partitions 0 -b "$DEAD" -t t /dev/null
bad_number krill-run-batch --window 0 -i /dev/null -o "$tmp/o.jsonl"
bad_number krill-tokenize --bench 1.5 -m "$M"
bad_number krill-generate --max-tokens 12x -m "$M" -p hi
bad_number krill-generate --seed -1 -m "$M" -p hi
bad_number krill-generate --temp nan -m "$M" -p hi
bad_number krill-bench --requests "" -m "$M" --prompt-len 8 --output-len 4
bad_number krill-bench --kv-overcommit 0.5 -m "$M" --requests 1 --prompt-len 8 --output-len 4
bad_number krill-bench-slo --threads 1.5 -m "$M"
bad_number krill-bench-slo --high 99999999999999999999 -m "$M"
usage_error "--static 64: exit 2 naming the option" "--static wants S:B" krill-bench-slo -m "$M" --static 64
usage_error "-X without '=': exit 2" "-X: 'foo' is not KEY=VALUE" krill-results -b "$DEAD" -t t -X foo
usage_error "-X without '=': exit 2" "-X: 'foo' is not KEY=VALUE" krill-enqueue -b "$DEAD" -t t -X foo /dev/null
usage_error "--format xml: exit 2" "--format must be json, msgpack or mixed" krill-enqueue -b "$DEAD" -t t --format=xml /dev/null

# --- required arguments and stray operands
usage_error "no -b/-t: exit 2" "-b BROKERS and -t TOPIC are required" krill-results
usage_error "no FILE: exit 2" "-b BROKERS, -t TOPIC and a FILE are required" krill-enqueue -b "$DEAD" -t t
usage_error "two FILEs: exit 2" "unexpected argument 'b'" krill-enqueue -b "$DEAD" -t t a b
usage_error "no -i/-o: exit 2" "-i IN.jsonl and -o OUT.jsonl are required" krill-run-batch -m "$M"
usage_error "operand: exit 2" "unexpected argument 'x'" krill-results -b "$DEAD" -t t x
usage_error "operand: exit 2" "unexpected argument 'x'" krill-generate -m "$M" -p hi x
usage_error "operand: exit 2" "unexpected argument 'x'" krill-bench -m "$M" --requests 1 --prompt-len 8 --output-len 4 x
usage_error "no FILE: exit 2" "FILE is required" krill-gguf
usage_error "--low > --high: exit 2" "need --low <= --high" krill-bench-slo -m "$M" --low=8 --high 4

# --- valid values in both spellings are accepted (the Kafka tools against a closed port:
#     krill-results with a group and -n 0 stops at once, krill-enqueue sends an empty file)
for form in "--idle-timeout=0.5 --group=g" "--idle-timeout 0.5 --group g"; do
  # shellcheck disable=SC2086
  "$B/krill-results" -q -b "$DEAD" -t t -n 0 $form >/dev/null 2>"$tmp/err"; check "krill-results: $form accepted" $?
done
for form in "--format=msgpack --max-tokens=5 --partitions=3 --brokers=$DEAD --topic=t" \
            "--format msgpack --max-tokens 5 --partitions 3 --brokers $DEAD --topic t"; do
  # shellcheck disable=SC2086
  "$B/krill-enqueue" -q $form /dev/null >/dev/null 2>"$tmp/err"; check "krill-enqueue: $form accepted" $?
done

if [ -f "$M" ]; then
  "$B/krill-gguf" --check --quiet "$M" >/dev/null 2>&1; check "krill-gguf: --check --quiet accepted" $?
  printf 'hello world' | "$B/krill-tokenize" --model="$M" >"$tmp/a" 2>/dev/null &&
    printf 'hello world' | "$B/krill-tokenize" --model "$M" >"$tmp/b" 2>/dev/null && cmp -s "$tmp/a" "$tmp/b" && [ -s "$tmp/a" ]
  check "krill-tokenize: --model=M and --model M agree" $?
  "$B/krill-generate" --model="$M" --prompt=Hi --max-tokens=2 --temp=0 >"$tmp/a" 2>/dev/null &&
    "$B/krill-generate" --model "$M" --prompt Hi --max-tokens 2 --temp 0 >"$tmp/b" 2>/dev/null && cmp -s "$tmp/a" "$tmp/b"
  check "krill-generate: --opt=value and --opt value agree (greedy)" $?
  "$B/krill-bench" --model="$M" --requests=2 --prompt-len=8 --output-len=4 --json >"$tmp/a" 2>/dev/null &&
    "$B/krill-bench" --model "$M" --requests 2 --prompt-len 8 --output-len 4 --json >"$tmp/b" 2>/dev/null &&
    grep -q '"requests":2,"prompt_len":8,"output_len":4' "$tmp/a" && grep -q '"requests":2,"prompt_len":8,"output_len":4' "$tmp/b"
  check "krill-bench: --opt=value and --opt value accepted" $?
  printf '%s\n' '{"custom_id":"a","body":{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}}' >"$tmp/in.jsonl"
  "$B/krill-run-batch" -q --model="$M" --window=1 --input="$tmp/in.jsonl" --output="$tmp/a" 2>/dev/null &&
    "$B/krill-run-batch" -q --model "$M" --window 1 --input "$tmp/in.jsonl" --output "$tmp/b" 2>/dev/null &&
    [ "$(wc -l <"$tmp/a")" = 1 ] && [ "$(wc -l <"$tmp/b")" = 1 ]
  check "krill-run-batch: --opt=value and --opt value accepted" $?
else
  echo "skip the runs that need $M (scripts/setup.sh fetches it)"
fi

[ $fails = 0 ] || { echo "FAIL: $fails checks failed"; exit 1; }
echo "all tools CLI checks passed"
