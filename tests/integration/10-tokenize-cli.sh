#!/usr/bin/env bash
# 10-tokenize-cli.sh — krill-tokenize end to end on the default model.
#
# Checks the CLI contract: --lines output equals llama.cpp's ids for every corpus line
# (tests/data/tokenizer, see tests/reference/gen_tokenizer_vectors.py), --special,
# --chat against the rendered-template ids, --decode (--lines) round trip, invalid
# UTF-8 and bad ids exit 1 naming the place, usage errors exit 2, --help/--version,
# --bench reports MB/s. Needs the default model (scripts/setup.sh); else SKIP (77).
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${KRILL_BUILD:-build}
T="$B/krill-tokenize"
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
D=tests/data/tokenizer
[ -f "$M" ] || { echo "SKIP: $M is missing (scripts/setup.sh fetches it)"; exit 77; }
[ -x "$T" ] || { echo "FAIL: $T is not built (make build)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # name, condition result
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}

# help, version, usage errors
"$T" --help | grep -q "usage: krill-tokenize"; check "--help" $?
[ "$("$T" --version)" = "krill-tokenize $(cat VERSION)" ]; check "--version" $?
"$T" --lines </dev/null 2>"$tmp/err"; [ $? -eq 2 ] && grep -q "required" "$tmp/err"; check "no -m: exit 2" $?
"$T" -m "$M" --bogus </dev/null 2>/dev/null; [ $? -eq 2 ]; check "unknown option: exit 2" $?
"$T" -m /nonexistent.gguf </dev/null 2>"$tmp/err"; [ $? -eq 1 ] && [ -s "$tmp/err" ]; check "missing model: exit 1" $?

# the parity corpus, line by line, plain and with special tokens
"$T" -m "$M" --lines <"$D/corpus.txt" >"$tmp/plain.ids"; r=$?
[ $r -eq 0 ] && cmp -s "$tmp/plain.ids" "$D/corpus.smollm.ids"; r=$?; check "--lines == llama.cpp ($(wc -l <"$D/corpus.txt") lines)" $r
"$T" -m "$M" --lines --special <"$D/corpus.txt" | cmp -s - "$D/corpus.smollm.special.ids"; check "--lines --special == llama.cpp" $?

# empty input, empty lines, a last line without newline, no BOS unless --bos
[ -z "$(printf '' | "$T" -m "$M" --lines)" ]; check "empty input: no output" $?
printf 'a\n\nb' | "$T" -m "$M" --lines >"$tmp/three"
[ "$(wc -l <"$tmp/three")" = 3 ] && [ "$(sed -n 1p "$tmp/three")" = "$(printf a | "$T" -m "$M")" ] &&
  [ -z "$(sed -n 2p "$tmp/three")" ] && [ "$(sed -n 3p "$tmp/three")" = "$(printf b | "$T" -m "$M")" ]
check "empty line -> empty line; last line without newline" $?
[ "$(printf 'Hi' | "$T" -m "$M" --bos)" = "1 $(printf 'Hi' | "$T" -m "$M")" ]; check "--bos prepends BOS" $?

# --chat --special: template + generation prompt + special parsing everywhere (the
# llama.cpp vectors); --chat: message content as text, so only a conversation with a
# control-token string in its content ("<|im_end|> stays text?") tokenizes differently
n=0; bad=0; differ=0
while IFS= read -r msgs; do
  n=$((n + 1))
  want=$(sed -n "${n}p" "$D/chat.ids")
  [ "$(printf '%s' "$msgs" | "$T" -m "$M" --chat --special)" = "$want" ] || bad=$((bad + 1))
  got=$(printf '%s' "$msgs" | "$T" -m "$M" --chat)
  case $msgs in
    *'<|im_end|>'*) [ "$got" != "$want" ] && differ=$((differ + 1)) || bad=$((bad + 1)) ;;
    *) [ "$got" = "$want" ] || bad=$((bad + 1)) ;;
  esac
done <"$D/chat.jsonl"
[ $n -gt 0 ] && [ $bad -eq 0 ] && [ $differ -eq 1 ]
check "--chat (--special) == template rendered + llama.cpp special ids; content as text by default ($n conversations)" $?
echo '{"messages": []}' | "$T" -m "$M" --chat 2>"$tmp/err" >/dev/null; [ $? -eq 1 ] && grep -q "non-empty" "$tmp/err"; check "--chat rejects empty messages" $?
echo 'not json' | "$T" -m "$M" --chat 2>"$tmp/err" >/dev/null; [ $? -eq 1 ] && grep -q "not JSON" "$tmp/err"; check "--chat rejects non-JSON" $?

# --decode: the llama.cpp ids give back every line the vocabulary can represent
# (SmolLM2 has no byte token for 04 06 13 14 16 1D C0 C1 F1 F2 F5..FF: those bytes are dropped)
"$T" -m "$M" --decode --lines <"$D/corpus.smollm.ids" >"$tmp/decoded.txt"; r=$?
[ $r -eq 0 ] && [ "$(wc -l <"$tmp/decoded.txt")" = "$(wc -l <"$D/corpus.txt")" ]; check "--decode --lines: one line per line" $?
PY=.cache/pyenv/bin/python
if [ -x "$PY" ]; then
  "$PY" - "$D/corpus.txt" "$tmp/decoded.txt" <<'EOF_PY'
import sys
missing = set([0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2] + list(range(0xF5, 0x100)))
want = open(sys.argv[1], "rb").read().split(b"\n")
got = open(sys.argv[2], "rb").read().split(b"\n")
assert len(want) == len(got), (len(want), len(got))
checked = bad = 0
for w, g in zip(want, got):
    if missing & set(w):
        continue
    checked += 1
    bad += w != g
print(f"decode round trip: {checked - bad} of {checked} representable lines identical")
sys.exit(1 if bad or checked < 2000 else 0)
EOF_PY
  check "--decode round trip of every representable line" $?
else
  echo "skip --decode round trip ($PY missing)"
fi
[ "$(echo '1 4093 198' | "$T" -m "$M" --decode --special)" = "<|im_start|>user" ]; check "--decode --special shows control tokens" $?
[ "$(echo '1 4093 198 2' | "$T" -m "$M" --decode | od -An -c | tr -s ' ')" = " u s e r \n" ]; check "--decode drops control tokens" $?
echo '12 99999999 5' | "$T" -m "$M" --decode 2>"$tmp/err" >/dev/null; [ $? -eq 1 ] && grep -q "99999999" "$tmp/err"; check "--decode: bad id exit 1" $?

# invalid UTF-8: exit 1, the byte offset and the line named
printf 'ok\nab\xffc\n' | "$T" -m "$M" --lines >/dev/null 2>"$tmp/err"; r=$?
[ $r -eq 1 ] && grep -q "byte offset 5 of the input (line 2)" "$tmp/err"; check "invalid UTF-8: exit 1 with offset" $?
printf '\xe6\x97' | "$T" -m "$M" >/dev/null 2>"$tmp/err"; [ $? -eq 1 ] && grep -q "byte offset 0" "$tmp/err"; check "truncated UTF-8 at the end" $?

# --bench reports a rate and prints no ids
out=$("$T" -m "$M" --bench 1 <"$D/corpus.txt" 2>"$tmp/err"); r=$?
[ $r -eq 0 ] && [ -z "$out" ] && grep -q "MB_per_s=" "$tmp/err"; check "--bench" $?

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all krill-tokenize checks passed"
