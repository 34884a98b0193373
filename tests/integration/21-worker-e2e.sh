#!/usr/bin/env bash
# 21-worker-e2e: 500 requests (JSON and msgpack mixed) over 4 partitions through one
# krill-worker with the tiny model: every request answered exactly once (lost 0, dup 0,
# unexpected 0), every result well-formed with usage; result keys and headers follow
# the request (key, copied headers, krill-source); stats records carry every field.
source tests/integration/lib/common.sh
need_bins
command -v kcat >/dev/null 2>&1 || skip "kcat not found (scripts/setup.sh installs it)"
tiny_model
broker_start 4
gen --valid 500 --seed 21 --max-tokens 3 --prefix e2e
enqueue --format mixed "$T/requests.jsonl"
# three requests with a key and headers of their own (kcat), answered like the rest
for i in 1 2 3; do
  printf '{"custom_id":"hdr-%d","body":{"prompt":"hello %d","max_tokens":2}}\n' "$i" "$i" |
    kcat -P -b "$BROKERS" -t krill.requests -k "key-$i" -H "trace-id=t$i" -H "tenant=acme" 2>/dev/null \
    || fail "kcat produce failed"
  echo "{\"custom_id\": \"hdr-$i\", \"expect\": \"200\"}" >>"$T/expect.jsonl"
done
readers_start
worker_start w1 --set model.path="$TINY"
wait_answered 503 180
sleep 2 # a stats interval
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
readers_stop
check || fail "checker: answers are not exactly one per request"
python3 - "$T/results.jsonl" <<'PY' || fail "keys/headers of results are wrong"
import json, sys
seen = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    v, h = e["value"], e["headers"]
    src = h.get("krill-source", "")
    t, p, o = src.rsplit(":", 2)
    assert t == "krill.requests" and p.isdigit() and o.isdigit(), src
    cid = v["custom_id"]
    if cid.startswith("hdr-"):
        i = cid[4:]
        assert e["key"] == "key-" + i, (cid, e["key"])
        assert h.get("trace-id") == "t" + i and h.get("tenant") == "acme", h
        seen += 1
    else:
        assert e["key"] == cid, (cid, e["key"])  # no request key: the request id
assert seen == 3, seen
PY
"$B/krill-results" -q -b "$BROKERS" -t krill.stats --from-beginning --idle-timeout 2 >"$T/stats.jsonl" 2>/dev/null
python3 - "$T/stats.jsonl" <<'PY' || fail "stats records are incomplete"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert recs, "no stats record"
need = ["worker", "ts", "window_s", "requests", "errors", "requests_per_s", "prompt_tokens_per_s",
        "generated_tokens_per_s", "batch", "latency_ms", "ttft_ms", "queue_depth", "in_flight",
        "kv_cache_used_frac", "backend", "device"]
for r in recs:
    for k in need:
        assert k in r, (k, r)
    for k in ("mean_seqs", "max_seqs", "mean_tokens"):
        assert k in r["batch"], r
    for k in ("p50", "p95", "p99"):
        assert k in r["latency_ms"] and k in r["ttft_ms"], r
    assert r["worker"] == "w1", r
total = sum(r["requests"] for r in recs)
assert total == 503, "stats counted %d requests" % total
busy = [r for r in recs if r["requests"] > 0]
assert any(r["latency_ms"]["p50"] is not None and r["batch"]["mean_seqs"] > 0 for r in busy), busy
print("stats records: %d, requests counted %d" % (len(recs), total))
PY
echo "PASS: 503 requests, one well-formed answer each"
