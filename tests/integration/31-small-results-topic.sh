#!/usr/bin/env bash
# 31-small-results-topic: a results topic whose max.message.bytes is 2,000 (set with the
# AdminClient, as `kafka-configs --alter` does). The producer's batches are sized from
# the topic's limit, so short answers are delivered; answers that cannot fit become a
# small result_too_large error naming the limit; the worker stays up and answers every
# request exactly once; when the limit shrinks under the running worker, an answer the
# broker refuses for its size is answered result_too_large in its place. (Before the fix: batches over the limit were refused as a whole,
# nothing got through, and the worker exited 3.)
source tests/integration/lib/common.sh
need_bins
tiny_model
command -v kcat >/dev/null 2>&1 || skip "kcat not found (it reads the results with their headers)"
broker_start 1
version=$(sed -n 's/^version=\${KRILL_KAFKA_VERSION:-\(.*\)}$/\1/p' scripts/kafka-local.sh)
jars=${KRILL_KAFKA_CACHE:-$root/.cache/kafka}/${KRILL_KAFKA_VERSION:-$version}/libs
cat >"$T/TopicConfig.java" <<'JAVA'
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.config.ConfigResource;
public class TopicConfig {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a[0]);
        try (Admin admin = Admin.create(p)) {
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, a[1]);
            AlterConfigOp op = new AlterConfigOp(new ConfigEntry(a[2], a[3]), AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(r, List.of(op))).all().get();
        }
    }
}
JAVA
java -Xmx128m -Dlog4j2.configurationFile="$T/kafka/log4j2.properties" -cp "$jars/*" "$T/TopicConfig.java" \
  "$BROKERS" krill.results max.message.bytes 2000 >"$T/topic-config.log" 2>&1 \
  || fail "cannot set max.message.bytes on krill.results: $(tail -n 3 "$T/topic-config.log")"
note "krill.results limited to 2000 bytes"
# 12 short answers (2 tokens) and 4 long ones (460 sampled tokens, never stopping early)
python3 - "$T/requests.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(16):
        long = i % 4 == 3
        body = {"messages": [{"role": "user", "content": "Tell me a story number %d" % i}],
                "max_tokens": 460 if long else 2, "temperature": 0}
        if long:  # sampled: varied tokens, several bytes each (greedy repeats short ones)
            body.update(ignore_eos=True, temperature=1.0, seed=i)
        f.write(json.dumps({"custom_id": ("long-%d" if long else "short-%d") % i, "body": body}) + "\n")
PY
enqueue "$T/requests.jsonl"
worker_start w0 --set model.path="$TINY" --set 'kafka.properties+=producer.message.timeout.ms=3000'
kcat_results 16 120
python3 - "$T/results.json" <<'PY' || fail "answers through a 2,000-byte results topic are not as specified"
import collections, json, sys
answers = [json.loads(json.loads(line)["payload"]) for line in open(sys.argv[1])]
seen = collections.Counter(v["custom_id"] for v in answers)
for v in answers:
    cid, resp = v["custom_id"], v["response"]
    if cid.startswith("short-"):
        assert resp["status_code"] == 200, (cid, resp)
    else:
        err = resp["body"]["error"]
        assert resp["status_code"] == 400 and err["code"] == "result_too_large", (cid, resp)
        assert "2000" in err["message"] and "krill.results" in err["message"], err["message"]
want = {("long-%d" if i % 4 == 3 else "short-%d") % i for i in range(16)}
assert set(seen) == want, sorted(want - set(seen))
assert all(n == 1 for n in seen.values()), {k: n for k, n in seen.items() if n != 1}
print("12 short answers delivered, 4 long ones answered result_too_large, each once")
PY
# The limit shrinks under the running worker (1,000 bytes): an answer that fitted the
# limit read at start-up (a greedy 200-token one is ~1,500 bytes) is refused by the broker
# for good, or found too large once the limit is read again; either way it is answered
# result_too_large and the worker goes on.
java -Xmx128m -Dlog4j2.configurationFile="$T/kafka/log4j2.properties" -cp "$jars/*" "$T/TopicConfig.java" \
  "$BROKERS" krill.results max.message.bytes 1000 >>"$T/topic-config.log" 2>&1 \
  || fail "cannot lower max.message.bytes on krill.results: $(tail -n 3 "$T/topic-config.log")"
echo '{"custom_id":"shrunk","body":{"prompt":"Once upon a time","max_tokens":200,"ignore_eos":true,"temperature":0}}' >"$T/shrunk.jsonl"
enqueue "$T/shrunk.jsonl"
for _ in $(seq 1 120); do
  kcat -C -b "$BROKERS" -t krill.results -e -q -J >"$T/results.json" 2>/dev/null
  grep -q '\\"custom_id\\":\\"shrunk\\"' "$T/results.json" && break
  worker_alive w0 || fail "the worker stopped after the limit shrank"
  sleep 0.5
done
python3 - "$T/results.json" <<'PY' || fail "the answer refused under a shrunk limit was not answered result_too_large once"
import json, sys
vs = [json.loads(json.loads(l)["payload"]) for l in open(sys.argv[1])]
s = [v for v in vs if v["custom_id"] == "shrunk"]
assert len(s) == 1, "%d answers" % len(s)
assert s[0]["response"]["body"]["error"]["code"] == "result_too_large", s[0]["response"]
PY
how=$(grep -c "refused for good" "$T/w0.log")
note "shrunk limit: answered result_too_large (refused by the broker first: $how)"
worker_alive w0 || fail "the worker stopped"
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
echo "PASS: a 2,000-byte results topic: short answers delivered, long ones result_too_large, worker up"
