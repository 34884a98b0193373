#!/usr/bin/env bash
# 42-no-secrets: a canary password in kafka.properties never leaves the worker.
#
# The canary is set as sasl.password through the config file and as a consumer-only
# property through --set while the worker serves requests with debug logging (librdkafka's
# "conf,generic,security,broker" debug contexts included) and stats every 500 ms; the
# environment (KRILL_KAFKA_PROPERTIES) is checked through --print-config and a start-up error. It must
# appear in no log line, no stats/result/DLQ record and no /metrics or /healthz answer;
# nor in --print-config, nor in the error of a property librdkafka rejects.
# The test also proves the canary was really loaded (--print-config redacts its key).
[ -f tests/integration/lib/common.sh ] || { echo "SKIP: tests/integration/lib/common.sh missing (it comes with the worker)"; exit 77; }
source tests/integration/lib/common.sh
need_bins
tiny_model
broker_start 2

canary="krill-canary-$(date +%s%N | sha256sum | cut -c1-20)"
port=$(free_port)
cat >"$T/krill.cfg" <<EOF
kafka: {
  properties = [ "sasl.password=$canary", "debug=conf,generic,security,broker" ];
};
EOF
# 1. --print-config: keys shown, values redacted — for each source (the environment's list
#    replaces the file's; --set += appends)
"$B/krill-worker" -c "$T/krill.cfg" --set "kafka.properties+=consumer.sasl.password=$canary-c" \
  --set model.path="$TINY" --print-config >"$T/print-config.txt" 2>&1 || fail "--print-config failed: $(tail -n 3 "$T/print-config.txt")"
KRILL_KAFKA_PROPERTIES="[\"producer.sasl.password=$canary-p\"]" "$B/krill-worker" --set model.path="$TINY" \
  --print-config >"$T/print-config-env.txt" 2>&1 || fail "--print-config (env) failed: $(tail -n 3 "$T/print-config-env.txt")"
grep -q '"sasl.password=<redacted>"' "$T/print-config.txt" || fail "--print-config does not show the file's sasl.password key redacted"
grep -q '"consumer.sasl.password=<redacted>"' "$T/print-config.txt" || fail "--print-config does not show the --set key redacted"
grep -q '"producer.sasl.password=<redacted>"' "$T/print-config-env.txt" || fail "--print-config does not show the environment's key redacted"

# 2. a property librdkafka rejects: named by its key, never its value
KRILL_KAFKA_PROPERTIES="[\"sasl.password=$canary-p\", \"sasl.passwrd=$canary-typo\"]" "$B/krill-worker" \
  --set kafka.brokers="$BROKERS" --set model.path="$TINY" --set metrics.listen=off >"$T/bad-prop.log" 2>&1 &
bad=$!
for _ in $(seq 1 100); do kill -0 $bad 2>/dev/null || break; sleep 0.1; done
if kill -0 $bad 2>/dev/null; then kill -KILL $bad; wait $bad 2>/dev/null; fail "a worker with an unknown Kafka property did not exit"; fi
wait $bad; rc=$?
[ "$rc" != 0 ] || fail "a worker with an unknown Kafka property exited 0"
grep -q "sasl.passwrd" "$T/bad-prop.log" || fail "the error does not name the rejected key: $(tail -n 3 "$T/bad-prop.log")"

# 3. serve requests with everything that could print it turned up
gen --valid 20 --malformed 6 --seed 42 --max-tokens 4
readers_start
"$B/krill-results" -q -b "$BROKERS" -t krill.stats --from-beginning --envelope >"$T/stats.jsonl" 2>"$T/stats.err" &
STATS_PID=$!
worker_start w1 -c "$T/krill.cfg" --set "kafka.properties+=consumer.sasl.password=$canary-c" \
  --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port --set log.level=debug \
  --set stats.interval_ms=500 --set 'kafka.properties+=statistics.interval.ms=500'
enqueue "$T/requests.jsonl"
wait_answered 20 180
sleep 1.5
for path in metrics healthz; do
  "$PY" -c "import sys,urllib.request,urllib.error
try: r=urllib.request.urlopen('http://127.0.0.1:$port/$path', timeout=5); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e: sys.stdout.write(e.read().decode())" >"$T/$path.txt" 2>&1
done
[ -s "$T/metrics.txt" ] || fail "no /metrics answer"
worker_stop w1 TERM; rc=$WRC
[ "$rc" = 0 ] || fail "worker exit status $rc"
readers_stop
kill -TERM $STATS_PID 2>/dev/null; wait $STATS_PID 2>/dev/null
[ -s "$T/stats.jsonl" ] || fail "no stats record was read (the check would prove nothing)"
[ "$(grep -c . "$T/w1.log")" -gt 20 ] || fail "the debug log is nearly empty (the check would prove nothing)"

# 4. the canary (or any of its suffixed variants) appears nowhere
leaks=$(grep -l -F "$canary" "$T"/*.log "$T"/*.jsonl "$T"/*.txt 2>/dev/null | grep -v requests.jsonl)
[ -z "$leaks" ] || fail "the canary password leaked into: $leaks ($(grep -h -F "$canary" $leaks | head -n 2 | cut -c1-200))"
note "canary absent from $(wc -l <"$T/w1.log") log lines, $(wc -l <"$T/stats.jsonl") stats records," \
     "$(wc -l <"$T/results.jsonl") results, /metrics ($(wc -l <"$T/metrics.txt") lines), --print-config and a rejected-property error"
note "PASS"
