#!/usr/bin/env bash
# 14-structured-outputs.sh — constrained decoding end to end on the default model
# (krill-generate --json-schema/--json-object/--regex/--choice/--lark, greedy).
#
# Every schema of tests/data/schemas (nested objects, enums, arrays with min/max items,
# patterns, anyOf, const, optional fields, $ref, arrays of objects) is generated from a
# chat prompt and the output is validated by Python's jsonschema (an independent
# validator) and must finish `stop`; so are a JSON object, regexes (re.fullmatch), a
# choice list and a Lark grammar. Grammars that do not compile exit 1 naming the
# compiler's complaint, before any token is generated. A batch of constrained and
# unconstrained requests side by side is in test_grammar / the benchmark.
# Needs the default model and .cache/pyenv with jsonschema (scripts/setup.sh): else skip (77).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${KRILL_BUILD:-build}
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
PY=.cache/pyenv/bin/python
[ -f "$M" ] || { echo "SKIP: $M missing (scripts/fetch-model.sh)"; exit 77; }
"$PY" -c "import jsonschema" 2>/dev/null || { echo "SKIP: $PY lacks jsonschema (scripts/setup.sh)"; exit 77; }
[ -x "$B/krill-generate" ] || { echo "FAIL: $B/krill-generate is not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }
gen() { # gen NAME PROMPT ARGS...: output in $tmp/NAME.out, stderr in $tmp/NAME.err
  local name=$1 prompt=$2; shift 2
  "$B/krill-generate" -m "$M" --threads 2 -n 256 --chat "$prompt" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
}
finished_stop() { grep -q "finish stop" "$tmp/$1.err"; }

prompt_for() {
  case $1 in
    nested) echo "Invent a person with a name and a postal address, as JSON." ;;
    enum) echo "Classify the sentiment of: 'I loved this film!' Answer in JSON." ;;
    array) echo "List a few colours of the rainbow as JSON." ;;
    pattern) echo "Give today's date and a product code as JSON." ;;
    anyof) echo "Give a measurement with a value and a unit as JSON." ;;
    const) echo "Write a report header as JSON." ;;
    optional) echo "Create a ticket with an id as JSON." ;;
    items) echo "Give key/value pairs as a JSON array." ;;
    refs) echo "Give two points on a grid as JSON." ;;
    classify) echo "Is this email spam? 'WIN MONEY NOW!!! click http://x.y'. Answer in JSON." ;;
    *) echo "Answer in JSON." ;;
  esac
}

for f in tests/data/schemas/*.json; do
  name=$(basename "$f" .json)
  gen "$name" "$(prompt_for "$name")" --json-schema "$f"
  rc=$?
  out=$(head -c 400 "$tmp/$name.out" | tr '\n' ' ')
  "$PY" - "$f" "$tmp/$name.out" <<'PY' >"$tmp/$name.val" 2>&1
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
if text.endswith("\n"):
    text = text[:-1]  # krill-generate adds one newline after the completion
jsonschema.Draft202012Validator.check_schema(schema)
jsonschema.validate(json.loads(text), schema, cls=jsonschema.Draft202012Validator)
PY
  ok=$?
  [ $rc = 0 ] && [ $ok = 0 ] && finished_stop "$name"
  r=$?
  [ $r = 0 ] || echo "     rc=$rc output: $out | $(tail -c 300 "$tmp/$name.val") | $(tail -n 1 "$tmp/$name.err")"
  check "schema $name: valid JSON for the schema, finish stop ($out)" $r
done

# any JSON object (a prompt this small model answers with a closed object: asked to
# "describe a cat as JSON" it repeats keys until max_tokens, which is the model's doing)
gen object "Give a JSON object with a cat's name and age." --json-object
"$PY" -c 'import json,sys; v=json.loads(open(sys.argv[1]).read()); assert isinstance(v, dict)' "$tmp/object.out" 2>/dev/null && finished_stop object
r=$?
check "json_object: a JSON object, finish stop ($(head -c 200 "$tmp/object.out" | tr '\n' ' '))" $r

# regexes, a choice list, a Lark grammar: re.fullmatch on the output
fullmatch() { # NAME REGEX
  "$PY" -c 'import re,sys; t=open(sys.argv[1]).read()[:-1]; sys.exit(0 if re.fullmatch(sys.argv[2], t) else 1)' "$tmp/$1.out" "$2"
}
gen phone "Give me a phone number." --regex '\+?[0-9]{1,3} [0-9]{3}-[0-9]{4}'
fullmatch phone '\+?[0-9]{1,3} [0-9]{3}-[0-9]{4}' && finished_stop phone
r=$?
check "regex: phone number ($(cat "$tmp/phone.out"))" $r
gen email "What is a typical email address?" --regex '[a-z]{1,10}@[a-z]{1,10}\.(com|org)'
fullmatch email '[a-z]{1,10}@[a-z]{1,10}\.(com|org)' && finished_stop email
r=$?
check "regex: email ($(cat "$tmp/email.out"))" $r
gen choice "Is the sky green? Answer yes or no." --choice '["yes", "no", "I do not know"]'
fullmatch choice '(yes|no|I do not know)' && finished_stop choice
r=$?
check "choice: one of the strings ($(cat "$tmp/choice.out"))" $r
cat >"$tmp/g.lark" <<'LARK'
start: "Answer: " ANSWER "."
ANSWER: /(true|false)/
LARK
gen lark "Is water wet?" --lark "$tmp/g.lark"
fullmatch lark 'Answer: (true|false)\.' && finished_stop lark
r=$?
check "lark: grammar's language ($(cat "$tmp/lark.out"))" $r

# max_tokens inside the grammar: finish length, the text a prefix (possibly incomplete JSON)
"$B/krill-generate" -m "$M" --threads 2 -n 3 --chat "JSON please" --json-schema tests/data/schemas/nested.json \
  >"$tmp/short.out" 2>"$tmp/short.err"
grep -q "finish length" "$tmp/short.err"
r=$?
check "max_tokens reached inside the grammar: finish length ($(cat "$tmp/short.out" | tr '\n' ' '))" $r

# grammars that do not compile: exit 1 with the compiler's message, nothing generated
bad() { # NAME PATTERN ARGS...
  local name=$1 pat=$2; shift 2
  "$B/krill-generate" -m "$M" --threads 2 -n 8 --chat "x" "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
  local rc=$?
  [ $rc = 1 ] && grep -q "does not compile" "$tmp/bad.err" && grep -qF -- "$pat" "$tmp/bad.err" && [ ! -s "$tmp/bad.out" ]
  local r=$?
  [ $r = 0 ] || echo "     rc=$rc $(head -c 300 "$tmp/bad.err")"
  check "refused: $name" $r
}
printf '{"type": "objekt"}' >"$tmp/s1.json"
bad "unknown type in a schema" "objekt" --json-schema "$tmp/s1.json"
printf '{"type": "object", "properties": ' >"$tmp/s2.json"
bad "schema that is not JSON" "EOF" --json-schema "$tmp/s2.json"
# a keyword llguidance does not implement is refused, never silently dropped
printf '{"type": "array", "items": {"type": "integer"}, "uniqueItems": true}' >"$tmp/s3.json"
bad "schema keyword llguidance does not implement (uniqueItems)" "uniqueItems" --json-schema "$tmp/s3.json"
bad "unclosed regex class" "unclosed" --regex '[0-9'
bad "empty choice list" "non-empty" --choice '[]'
printf 'start: missing_rule\n' >"$tmp/b.lark"
bad "Lark rule never defined" "missing_rule" --lark "$tmp/b.lark"

echo "$fails failed"
[ $fails = 0 ]
