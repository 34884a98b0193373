#!/usr/bin/env python3
# make-dashboard.py — writes the krill Grafana dashboard (compose/grafana/dashboards/krill.json)
# to stdout. Edit the panels here, then:
#   python3 compose/grafana/make-dashboard.py > compose/grafana/dashboards/krill.json
# tests/integration/40-compose-config.sh checks that the committed JSON is this output
# and that every metric it queries exists in src/worker/metrics.c.
import json
DS = {"type": "prometheus", "uid": "prometheus"}
F = '{instance=~"$instance"}'
def sel(extra=""):
    return '{instance=~"$instance"%s}' % ("," + extra if extra else "")
panels = []
y = 0
def row(title):
    global y
    panels.append({"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    y += 1
def ts(title, targets, unit, x, w=12, h=8, desc="", stack=False, minv=0):
    p = {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit, "min": minv,
                                       "custom": {"lineWidth": 1, "fillOpacity": 10 if not stack else 40,
                                                  "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
                         "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "desc"}},
         "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i)} for i, (e, l) in enumerate(targets)]}
    panels.append(p)
def stat(title, expr, unit, x, w=4, desc=""):
    panels.append({"type": "stat", "title": title, "description": desc, "datasource": DS,
                   "gridPos": {"h": 4, "w": w, "x": x, "y": y},
                   "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                   "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                               "colorMode": "value", "graphMode": "area", "textMode": "auto"},
                   "targets": [{"datasource": DS, "expr": expr, "refId": "A"}]})
def q(h, p, w="5m"):
    return 'histogram_quantile(%s, sum by (le) (rate(%s_bucket%s[%s])))' % (p, h, F, w)

row("Overview")
stat("Workers up", 'count(up{job="krill"} == 1)', "none", 0)
stat("Requests / s", 'sum(rate(krill_requests_total%s[1m]))' % F, "reqps", 4)
stat("Generated tokens / s", 'sum(rate(krill_generated_tokens_total%s[1m]))' % F, "short", 8)
stat("p95 TTFT", q("krill_time_to_first_token_seconds", 0.95), "s", 12)
stat("Lag (messages)", 'sum(krill_consumer_lag_messages%s)' % F, "short", 16)
stat("Backlog drain (worker-seconds)", 'sum(krill_backlog_drain_seconds%s)' % F, "s", 20,
     desc="Sum over workers of the estimated time each needs to drain its backlog: the KEDA scaling signal.")
y += 4
row("Throughput")
ts("Token throughput", [('sum(rate(krill_generated_tokens_total%s[1m]))' % F, "generated tokens/s"),
                        ('sum(rate(krill_prompt_tokens_total%s[1m]))' % F, "prompt tokens/s")], "short", 0,
   desc="Tokens of answered requests per second, all workers.")
ts("Requests by status", [('sum by (status) (rate(krill_requests_total%s[1m]))' % F, "{{status}}")], "reqps", 12,
   stack=True, desc="Answered requests per second by result status_code (200 ok, 400/404 invalid, 500 internal error).")
y += 8
ts("Why generation ended", [('sum by (finish_reason) (rate(krill_requests_total%s[1m]))' % sel('status="200"'),
                             "{{finish_reason}}")], "reqps", 0, stack=True,
   desc="Successful answers per second by finish_reason: stop (end of sequence or a stop string) or length (max_tokens reached).")
ts("Preemptions", [('rate(krill_preemptions_total%s[5m])' % F, "{{instance}}")], "short", 12,
   desc="Sequences preempted per second because the KV cache ran out (recomputed later); only with an overcommitted KV cache.")
y += 8
row("Latency")
ts("Time to first token", [(q("krill_time_to_first_token_seconds", p), "p%d" % int(p * 100)) for p in (0.5, 0.95, 0.99)], "s", 0,
   desc="From consumption to the first generated token.")
ts("Request latency", [(q("krill_request_latency_seconds", p), "p%d" % int(p * 100)) for p in (0.5, 0.95, 0.99)], "s", 12,
   desc="From consumption to the finished result.")
y += 8
ts("Time per output token", [(q("krill_time_per_output_token_seconds", p), "p%d" % int(p * 100)) for p in (0.5, 0.95, 0.99)], "s", 0)
ts("Queue time", [(q("krill_queue_time_seconds", p), "p%d" % int(p * 100)) for p in (0.5, 0.95, 0.99)], "s", 12,
   desc="From consumption to the first engine step that includes the request.")
y += 8
row("Batching")
ts("Batch size (sequences per step)", [('krill_batch_size%s' % F, "{{instance}}"),
                                       ('krill_slo_max_seqs%s' % F, "limit {{instance}}")], "short", 0)
ts("Tokens per step", [(q("krill_step_batch_tokens", 0.5, "1m"), "p50"), (q("krill_step_batch_tokens", 0.95, "1m"), "p95"),
                       ('krill_slo_max_batch_tokens%s' % F, "limit {{instance}}")], "short", 12,
   desc="Prefill + decode tokens per engine step; the limit is the SLO controller's (or the static setting).")
y += 8
ts("Running / waiting", [('sum(krill_requests_running%s)' % F, "running"), ('sum(krill_requests_waiting%s)' % F, "waiting")],
   "short", 0)
ts("KV cache usage", [('krill_kv_cache_usage_ratio%s' % F, "{{instance}}")], "percentunit", 12)
y += 8
ts("Engine utilisation", [('rate(krill_engine_busy_seconds_total%s[1m])' % F, "{{instance}}")], "percentunit", 0,
   desc="Fraction of wall time the engine spends stepping.")
ts("SLO controller p95 estimates", [('krill_slo_ttft_p95_seconds%s' % F, "ttft {{instance}}"),
                                    ('krill_slo_tpot_p95_seconds%s' % F, "tpot {{instance}}")], "s", 12,
   desc="What batching.slo sees (empty when the controller is off).")
y += 8
row("Backlog and lag")
ts("Consumer lag (messages)", [('sum by (topic, partition) (krill_consumer_lag_messages%s)' % F, "{{topic}}/{{partition}}")],
   "short", 0, stack=True)
ts("Backlog (tokens)", [('sum(krill_backlog_tokens%s)' % F, "backlog tokens"),
                        ('sum(krill_pending_prompt_tokens%s)' % F, "pending prompt tokens")], "short", 12,
   desc="Estimated work waiting in tokens: consumed-but-unanswered prompts, their generations, and the lag at the recent mean request size.")
y += 8
ts("Backlog drain time", [('krill_backlog_drain_seconds%s' % F, "{{instance}}")], "s", 0)
ts("Dead letters", [('sum by (code) (rate(krill_dlq_total%s[5m]))' % F, "{{code}}")], "short", 12, stack=True,
   desc="Undecodable messages sent to krill.dlq per second, by krill-error-code.")
y += 8
row("Process")
ts("Resident memory", [('process_resident_memory_bytes%s' % F, "{{instance}}")], "bytes", 0,
   desc="Resident set size of each worker process (from /proc at scrape time).")
ts("CPU", [('rate(process_cpu_seconds_total%s[1m])' % F, "{{instance}}")], "short", 12,
   desc="CPU cores used by each worker process (user + system).")
y += 8
ts("Open file descriptors", [('process_open_fds%s' % F, "{{instance}}"), ('process_max_fds%s' % F, "limit {{instance}}")],
   "short", 0)
ts("Metrics connections dropped", [('rate(krill_metrics_connections_dropped_total%s[5m])' % F, "{{instance}}")], "short",
   12, desc="Connections to /metrics closed by its limits (10 s request deadline, 32 kept): non-zero means a slow or hostile client.")
y += 8

dash = {
    "title": "krill", "uid": "krill", "tags": ["krill", "kafka", "llm"], "timezone": "browser",
    "schemaVersion": 39, "version": 1, "editable": False, "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [{
        "name": "instance", "label": "worker", "type": "query", "datasource": DS,
        "query": {"query": "label_values(krill_info, instance)", "refId": "instance"},
        "definition": "label_values(krill_info, instance)", "refresh": 2, "multi": True, "includeAll": True,
        "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}]},
    "annotations": {"list": []},
    "panels": [dict(p, id=i + 1) for i, p in enumerate(panels)],
}
print(json.dumps(dash, indent=2))
