#!/usr/bin/env bash
# 41-metrics: /metrics and /healthz of a real worker on the local broker.
#
# A worker (tiny model) answers valid requests and malformed messages; then its
# /metrics text is parsed by prometheus_client's own parser (text_string_to_metric_families,
# the PyPI package pinned in scripts/setup.sh) and checked against what was actually
# produced: requests by (status, finish_reason) == results by (status_code, the choice's
# finish_reason; "error" for every non-200), DLQ records by krill-error-code,
# token counters == the results' usage sums, histogram counts == answers, lag series
# for the assigned partitions (0 once everything is consumed), every documented metric
# present with its type, krill_info's model label == the results' body.model,
# krill_preemptions_total 0 (kv overcommit 1.0 never preempts) and the process_*
# metrics present. /healthz is 200 while serving and the endpoint goes away at exit.
[ -f tests/integration/lib/common.sh ] || { echo "SKIP: tests/integration/lib/common.sh missing (it comes with the worker)"; exit 77; }
source tests/integration/lib/common.sh
need_bins
"$PY" -c 'import prometheus_client' 2>/dev/null || skip "$PY lacks prometheus_client (scripts/setup.sh installs prometheus-client)"
tiny_model
broker_start 4

N=60; M=12
gen --valid $N --malformed $M --seed 41 --max-tokens 6
port=$(free_port)
readers_start
worker_start w1 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port \
  --set 'kafka.properties+=statistics.interval.ms=500'

# /healthz: 200 once the consumer has joined its group and the engine loops
deadline=$((SECONDS + 60)); code=0
while [ $SECONDS -lt $deadline ]; do
  worker_alive w1 || fail "worker exited early"
  code=$(http "http://127.0.0.1:$port/healthz" | head -n1)
  [ "$code" = 200 ] && break
  sleep 0.3
done
[ "$code" = 200 ] || fail "/healthz never answered 200 (last: $code)"
note "/healthz 200"

enqueue "$T/requests.jsonl"
wait_answered $N 240
sleep 2   # a statistics interval or more: the lag of the consumed partitions settles at 0
http "http://127.0.0.1:$port/metrics" >"$T/metrics.http"
[ "$(head -n1 "$T/metrics.http")" = 200 ] || fail "/metrics: $(head -n3 "$T/metrics.http")"
tail -n +2 "$T/metrics.http" >"$T/metrics.txt"
readers_stop
check >"$T/check.log" 2>&1 || fail "results check: $(cat "$T/check.log")"

"$PY" - "$T/metrics.txt" "$T/results.jsonl" "$T/dlq.jsonl" <<'PY' || fail "metrics disagree with what was produced"
import collections, json, math, sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
fams = {f.name: f for f in text_string_to_metric_families(text)}   # raises on a format error
errors = []
want = {
    "krill_requests": "counter", "krill_prompt_tokens": "counter", "krill_generated_tokens": "counter",
    "krill_dlq": "counter", "krill_requests_running": "gauge", "krill_requests_waiting": "gauge",
    "krill_kv_cache_usage_ratio": "gauge", "krill_batch_size": "gauge", "krill_consumer_lag_messages": "gauge",
    "krill_pending_prompt_tokens": "gauge", "krill_backlog_drain_seconds": "gauge",
    "krill_slo_max_seqs": "gauge", "krill_slo_max_batch_tokens": "gauge",
    "krill_time_to_first_token_seconds": "histogram", "krill_time_per_output_token_seconds": "histogram",
    "krill_request_latency_seconds": "histogram", "krill_queue_time_seconds": "histogram",
    "krill_step_batch_tokens": "histogram", "krill_preemptions": "counter", "krill_info": "gauge",
    "process_cpu_seconds": "counter", "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge", "process_open_fds": "gauge",
}
for name, typ in want.items():
    if name not in fams:
        errors.append(f"metric family {name} missing")
    elif fams[name].type != typ:
        errors.append(f"{name} is a {fams[name].type}, expected {typ}")

def samples(fam, sname=None, **labels):
    return [s for s in fams[fam].samples if (sname is None or s.name == sname)
            and all(s.labels.get(k) == v for k, v in labels.items())]
def one(fam, sname=None, **labels):
    ss = samples(fam, sname, **labels)
    return ss[0].value if ss else 0.0

# what was produced (krill-results --envelope lines)
status = collections.Counter()   # (status_code, finish_reason)
models = set()
prompt = gen = ok = 0
for line in open(sys.argv[2]):
    if not line.strip():
        continue
    v = json.loads(line)["value"]
    sc = v["response"]["status_code"]
    body = v["response"]["body"]
    status[(str(sc), body["choices"][0]["finish_reason"] if sc == 200 else "error")] += 1
    if sc == 200:
        ok += 1
        models.add(body["model"])
        u = body["usage"]
        prompt += u["prompt_tokens"]; gen += u["completion_tokens"]
dlq = collections.Counter()
for line in open(sys.argv[3]):
    if line.strip():
        h = json.loads(line).get("headers") or {}
        if isinstance(h, list):
            h = {k: v for k, v in h}
        dlq[h.get("krill-error-code")] += 1

got_status = {(s.labels["status"], s.labels["finish_reason"]): s.value
              for s in samples("krill_requests", "krill_requests_total")}
if got_status != {k: float(v) for k, v in status.items()}:
    errors.append(f"krill_requests_total {got_status} != results by (status_code, finish_reason) {dict(status)}")
if not any(k[1] == "length" for k in status):
    errors.append(f"no answer stopped at max_tokens: the finish_reason check proves little ({dict(status)})")
info_models = {s.labels.get("model") for s in samples("krill_info")}
if len(models) != 1 or info_models != models:
    errors.append(f"krill_info model label {info_models} != the results' body.model {models}")
if one("krill_preemptions", "krill_preemptions_total") != 0:
    errors.append("krill_preemptions_total is not 0 though the KV cache is never overcommitted")
if not (one("process_resident_memory_bytes") > 0 and one("process_open_fds") > 0):
    errors.append("process_resident_memory_bytes / process_open_fds not positive")
got_dlq = {s.labels["code"]: s.value for s in samples("krill_dlq", "krill_dlq_total")}
if got_dlq != {k: float(v) for k, v in dlq.items()}:
    errors.append(f"krill_dlq_total {got_dlq} != DLQ records by krill-error-code {dict(dlq)}")
if one("krill_prompt_tokens") != prompt:
    errors.append(f"krill_prompt_tokens_total {one('krill_prompt_tokens')} != results' prompt_tokens {prompt}")
if one("krill_generated_tokens") != gen:
    errors.append(f"krill_generated_tokens_total {one('krill_generated_tokens')} != completion_tokens {gen}")
total = sum(status.values())
n_status = collections.Counter()
for (sc, _), n in status.items():
    n_status[sc] += n
for h, n in (("krill_request_latency_seconds", total), ("krill_time_to_first_token_seconds", ok)):
    c = one(h, h + "_count")
    if c != n:
        errors.append(f"{h}_count {c} != {n}")
    inf = one(h, h + "_bucket", le="+Inf")
    if inf != c:
        errors.append(f"{h}: +Inf bucket {inf} != _count {c}")
steps = one("krill_engine_steps", "krill_engine_steps_total")
if one("krill_step_batch_tokens", "krill_step_batch_tokens_count") != steps or steps <= 0:
    errors.append(f"krill_step_batch_tokens_count != krill_engine_steps_total ({steps})")
lag = samples("krill_consumer_lag_messages")
parts = {(s.labels["topic"], s.labels["partition"]) for s in lag}
if not parts or any(t != "krill.requests" for t, _ in parts):
    errors.append(f"consumer lag series: {sorted(parts)} (want the assigned krill.requests partitions)")
if any(s.value != 0 for s in lag):
    errors.append(f"lag after everything was consumed: {[(s.labels, s.value) for s in lag]}")
if one("krill_requests_running") != 0 or one("krill_pending_prompt_tokens") != 0:
    errors.append("work reported in flight after every request was answered")
if not (0 <= one("krill_kv_cache_usage_ratio") <= 1):
    errors.append("krill_kv_cache_usage_ratio outside 0..1")
for e in errors:
    print("FAIL:", e)
print(f"metrics: {len(fams)} families; {total} results {dict(n_status)}, dlq {dict(dlq)}, "
      f"prompt {prompt} / generated {gen} tokens, {int(steps)} steps, lag series {len(parts)}")
sys.exit(1 if errors else 0)
PY

worker_stop w1 TERM; rc=$WRC
[ "$rc" = 0 ] || fail "worker exit status $rc after SIGTERM"
[ "$(http "http://127.0.0.1:$port/metrics" | head -n1)" = 0 ] || fail "/metrics still answers after the worker exited"
note "PASS"
