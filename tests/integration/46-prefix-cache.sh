#!/usr/bin/env bash
# 46-prefix-cache: the prefix cache through a real worker on the local broker.
#
# 24 chat requests share one long system prompt (~300 tokens) and differ in their user
# message (greedy and seeded). Run 1: a worker with batching.prefix_cache=true (the
# default), records keyed with krill-enqueue --key prefix (one system prompt: one key,
# checked on the results, which carry the request's key). Run 2: the same bodies under
# other custom_ids, a new worker with batching.prefix_cache=false (env
# KRILL_BATCHING_PREFIX_CACHE=false). Checks: every request answered 200 both times;
# the completions (text, finish_reason, usage token counts) identical with the cache
# on and off; run 1's /metrics shows krill_prefix_cache_hits_total > 0 (tokens), below
# krill_prefix_cache_queries_total, and krill_prefix_cache_blocks > 0, run 2's hits 0;
# and the answers report usage.prompt_tokens_details.cached_tokens > 0 for run 1
# (this field is written by codec_encode.c; its absence is a failure, naming it).
source tests/integration/lib/common.sh
need_bins
tiny_model
broker_start 2

python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
system = ("You are the catalogue assistant of a hardware shop. Answer in one short sentence. "
          "Rules: never invent a product; prices are in euros; be polite; prefer metric units; "
          "when unsure, say so. Catalogue: hammer 12 euros, saw 25 euros, drill 89 euros, "
          "screwdriver set 19 euros, tape measure 7 euros, level 15 euros, pliers 11 euros, "
          "wrench set 34 euros, sandpaper pack 6 euros, workbench 149 euros, ladder 79 euros, "
          "safety glasses 9 euros, gloves 8 euros, clamps 14 euros, chisel set 27 euros. ") * 2
users = ["How much is the hammer?", "Do you sell a drill?", "What does a ladder cost?",
         "Is there a workbench?", "Price of gloves?", "Which is cheapest?", "Do you have nails?",
         "What about clamps?", "How much are safety glasses?", "Tell me the saw price.",
         "Any chisel set?", "What is the most expensive item?"]
with open(f"{t}/on.jsonl", "w") as on, open(f"{t}/off.jsonl", "w") as off, open(f"{t}/expect.jsonl", "w") as e:
    for i in range(24):
        body = {"messages": [{"role": "system", "content": system},
                             {"role": "user", "content": users[i % len(users)] + (" Thanks." if i >= 12 else "")}],
                "max_tokens": 8}
        if i % 2:
            body.update({"temperature": 0.9, "seed": 100 + i})
        else:
            body["temperature"] = 0
        for f, pre in ((on, "on"), (off, "off")):
            f.write(json.dumps({"custom_id": f"{pre}-{i}", "body": body}) + "\n")
            e.write(json.dumps({"custom_id": f"{pre}-{i}", "expect": "200"}) + "\n")
PY

# scrape PORT OUT: the worker's /metrics text (fails when it does not answer)
scrape() {
  http "http://127.0.0.1:$1/metrics" >"$2.http"
  [ "$(head -n1 "$2.http")" = 200 ] || fail "/metrics: $(head -n3 "$2.http")"
  tail -n +2 "$2.http" >"$2"
}
metric() { awk -v n="$1" '$1 == n { print $2 }' "$2"; }

readers_start
port=$(free_port)
"$B/krill-enqueue" -q -b "$BROKERS" -t krill.requests --key prefix "$T/on.jsonl" 2>"$T/enqueue.log" \
  || fail "enqueue failed: $(tail -n 3 "$T/enqueue.log")"
worker_start w1 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port --set batching.prefix_cache=true
wait_answered 24 240
scrape $port "$T/metrics-on.txt"
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "worker w1 exit status $WRC"

port=$(free_port)
KRILL_BATCHING_PREFIX_CACHE=false worker_start w2 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port
enqueue "$T/off.jsonl"
wait_answered 48 240
scrape $port "$T/metrics-off.txt"
worker_stop w2 TERM
[ "$WRC" = 0 ] || fail "worker w2 exit status $WRC"
readers_stop
check --strict-dlq >"$T/check.log" 2>&1 || fail "answers are not as expected: $(tail -n 5 "$T/check.log")"
grep -q 'prefix_cache=on' "$T/w1.log" || fail "w1 did not log prefix_cache=on"
grep -q 'prefix_cache=off' "$T/w2.log" || fail "w2 did not log prefix_cache=off (KRILL_BATCHING_PREFIX_CACHE=false ignored?)"

hits=$(metric krill_prefix_cache_hits_total "$T/metrics-on.txt")
queries=$(metric krill_prefix_cache_queries_total "$T/metrics-on.txt")
blocks=$(metric krill_prefix_cache_blocks "$T/metrics-on.txt")
hits_off=$(metric krill_prefix_cache_hits_total "$T/metrics-off.txt")
note "cache on: hits $hits of $queries prompt tokens, $blocks cached blocks; cache off: hits $hits_off"
python3 - "$hits" "$queries" "$blocks" "$hits_off" <<'PY' || fail "prefix cache metrics"
import sys
h, q, b, off = (float(x) if x else -1 for x in sys.argv[1:])
assert h > 0, f"krill_prefix_cache_hits_total {h}: the shared system prompt was never served from the cache"
assert q > h, f"queries {q} must exceed hits {h} (every prompt's own tail is computed)"
assert b > 0, f"krill_prefix_cache_blocks {b}"
assert off == 0, f"cache off: krill_prefix_cache_hits_total {off}"
PY

python3 - "$T/results.jsonl" <<'PY' || fail "answers with the cache on differ from the cache off, or cached_tokens is wrong"
import json, sys
res = {}
for line in open(sys.argv[1]):
    if line.strip():
        v = json.loads(line)["value"]
        res[v["custom_id"]] = v["response"]["body"]
errors, cached = [], {}
keys = {}
for line in open(sys.argv[1]):
    if line.strip():
        e = json.loads(line)
        keys[e["value"]["custom_id"]] = e["key"]
on_keys = {keys[f"on-{i}"] for i in range(24)}
# --key prefix: one shared system prompt, one key (the results carry the request's key)
if len(on_keys) != 1 or not next(iter(on_keys)).startswith("p-"):
    errors.append(f"run 1 (--key prefix) record keys: {sorted(on_keys)}")
if any(keys[f"off-{i}"] != f"off-{i}" for i in range(24)):
    errors.append("run 2 (default --key custom_id) records are not keyed by their custom_id")
for i in range(24):
    a, b = res[f"on-{i}"], res[f"off-{i}"]
    ca, cb = a["choices"][0], b["choices"][0]
    ta = ca["message"]["content"] if "message" in ca else ca["text"]
    tb = cb["message"]["content"] if "message" in cb else cb["text"]
    ua = {k: a["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
    ub = {k: b["usage"][k] for k in ("prompt_tokens", "completion_tokens")}
    if (ta, ca["finish_reason"], ua) != (tb, cb["finish_reason"], ub):
        errors.append(f"request {i}: on {ta!r} {ca['finish_reason']} {ua} != off {tb!r} {cb['finish_reason']} {ub}")
    cached[i] = ((a["usage"].get("prompt_tokens_details") or {}).get("cached_tokens"),
                 (b["usage"].get("prompt_tokens_details") or {}).get("cached_tokens"))
print(f"{24 - len(errors)} of 24 completions identical with the cache on and off")
on = [c[0] for c in cached.values()]
if any(c is None for c in on):
    errors.append("usage.prompt_tokens_details.cached_tokens missing from answers (written by codec_encode.c)")
else:
    if not sum(on) > 0:
        errors.append(f"cached_tokens with the cache on: {on}")
    if any(c[1] for c in cached.values()):
        errors.append(f"cached_tokens with the cache off: {[c[1] for c in cached.values()]}")
    print(f"cached_tokens (cache on): {on}")
for e in errors:
    print("FAIL:", e)
sys.exit(1 if errors else 0)
PY
note "PASS"
