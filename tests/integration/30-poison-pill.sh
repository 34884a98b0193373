#!/usr/bin/env bash
# 30-poison-pill: with every topic at the broker's defaults, a ~1.04 MB invalid-JSON
# message (under input.max_message_bytes, so it is decoded and dead-lettered) sits among
# valid requests on one partition, followed by a request carrying 1,000 headers of 1 KB
# and forged krill-source / krill-error-code headers. The worker stays up; the poison
# gets a truncated DLQ copy (krill-truncated, krill-original-size) and its 400 result;
# the headers request is answered with a bounded copy of its headers and the worker's
# own krill-source once; every request after them is answered exactly once. (Before the
# fix: the DLQ copy was over the producer's message.max.bytes, the worker exited 3 after
# its retries, and every worker taking the partition would do the same.)
source tests/integration/lib/common.sh
need_bins
tiny_model
command -v kcat >/dev/null 2>&1 || skip "kcat not found (it writes the oversized messages and headers)"
broker_start 1
P=(kcat -P -b "$BROKERS" -t krill.requests -p 0 -X message.max.bytes=1048588)
python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
def req(cid):
    return json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": "hi " + cid}],
                                                  "max_tokens": 2, "temperature": 0}})
open(t + "/before.jsonl", "w").write("".join(req("a%d" % i) + "\n" for i in range(5)))
open(t + "/after.jsonl", "w").write("".join(req("b%d" % i) + "\n" for i in range(10)))
open(t + "/hdrs.json", "w").write(req("hdrs"))
# invalid JSON (never closed) whose custom_id can still be read: 1,048,400 bytes
head = '{"custom_id":"poison","body":{"messages":[{"role":"user","content":"'
open(t + "/poison.json", "w").write(head + "x" * (1048400 - len(head)))
PY
"${P[@]}" -l "$T/before.jsonl" 2>"$T/kcat.log" || fail "kcat: $(tail -n 3 "$T/kcat.log")"
"${P[@]}" "$T/poison.json" 2>>"$T/kcat.log" || fail "kcat (poison): $(tail -n 3 "$T/kcat.log")"
hdr=$(head -c 1000 /dev/zero | tr '\0' h)
H=(-H krill-source=forged -H krill-error-code=forged)
for i in $(seq 1 1000); do H+=(-H "h$i=$hdr"); done
"${P[@]}" "${H[@]}" "$T/hdrs.json" 2>>"$T/kcat.log" || fail "kcat (headers): $(tail -n 3 "$T/kcat.log")"
"${P[@]}" -l "$T/after.jsonl" 2>>"$T/kcat.log" || fail "kcat: $(tail -n 3 "$T/kcat.log")"
note "17 requests on one partition: 5 valid, the poison, 1,000 headers, 10 valid"
worker_start w0 --set model.path="$TINY" --set 'kafka.properties+=producer.message.timeout.ms=3000'
kcat_results 17 120
kcat -C -b "$BROKERS" -t krill.dlq -e -q -J -X fetch.message.max.bytes=2000000 >"$T/dlq.json" 2>/dev/null
python3 - "$T/results.json" "$T/dlq.json" <<'PY' || fail "the poison pill and the headers request were not answered as specified"
import collections, json, sys
def headers(env):
    h = env.get("headers") or []
    return list(zip(h[0::2], h[1::2]))
seen = collections.Counter()
for line in open(sys.argv[1]):
    env = json.loads(line)
    v = json.loads(env["payload"])
    cid = v["custom_id"]
    seen[cid] += 1
    st = v["response"]["status_code"]
    if cid == "poison":
        assert st == 400 and v["response"]["body"]["error"]["code"] == "invalid_json", v["response"]
    else:
        assert st == 200, (cid, v["response"])
    hs = headers(env)
    names = [n for n, _ in hs]
    assert names.count("krill-source") == 1 and "krill-error-code" not in names, (cid, names[:5])
    src = dict(hs)["krill-source"]
    assert src.startswith("krill.requests:0:"), src
    if cid == "hdrs":
        assert len(hs) <= 66 and sum(len(n) + len(x or "") for n, x in hs) <= 17000, len(hs)
        assert int(dict(hs)["krill-headers-dropped"]) > 900, dict(hs).get("krill-headers-dropped")
want = {"a%d" % i for i in range(5)} | {"b%d" % i for i in range(10)} | {"poison", "hdrs"}
assert set(seen) == want, sorted(want ^ set(seen))
assert all(n == 1 for n in seen.values()), {k: n for k, n in seen.items() if n != 1}
dlq = [json.loads(l) for l in open(sys.argv[2])]
assert len(dlq) == 1, "%d DLQ records" % len(dlq)
h = dict(headers(dlq[0]))
assert h.get("krill-error-code") == "invalid_json", h.get("krill-error-code")
assert h.get("krill-truncated") == "true" and h.get("krill-original-size") == "1048400", h
p = dlq[0]["payload"]
assert 1000000 < len(p) < 1048400 and p.startswith('{"custom_id":"poison"'), len(p)
print("poison: truncated DLQ copy (%d of 1048400 bytes) + 400; headers request bounded; 17 answered once" % len(p))
PY
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
echo "PASS: a ~1.04 MB poison pill and 1,000 headers answered; the worker stayed up and the partition moved on"
