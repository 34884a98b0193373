#!/usr/bin/env bash
# 39-eos-read-uncommitted: what a reader that does not read_committed sees. With
# delivery.mode exactly_once and 20 s transactions, the worker is killed -9 while its
# open transaction holds answers, and restarted with the same worker.id (which aborts
# that transaction). A read_committed reader sees every request answered once; a
# read_uncommitted reader sees the same records plus extras, and the extras are exactly
# the aborted answers: records the committed reader never sees, each one a first try of
# a request whose committed answer came later — so its duplicates are exactly them.
source tests/integration/lib/common.sh
N=800
eos_begin $N 39 eu 2
"$B/krill-results" -q -b "$BROKERS" -t krill.results --from-beginning --envelope -X isolation.level=read_uncommitted \
  >"$T/results-ru.jsonl" 2>"$T/results-ru.err" &
RU_PID=$!
WORKER_SETS=(--set model.path="$TINY" --set worker.id=eu --set delivery.mode=exactly_once
             --set delivery.transaction_ms=20000 --set delivery.transaction_timeout_ms=60000)
worker_start w0
feed_start 20 1  # ~40 s of feeding: two 20 s transactions see answers arrive
wait_assigned w0
# Kill in the middle of a transaction: 1.5-8 s after the committed reader last saw a
# commit (they come every 20 s; with 5 s ones a kill "just after" a commit sometimes hit
# a commit already on its way to the coordinator, and nothing was aborted), once 20
# answers wait uncommitted.
last=0 tchange=0
for _ in $(seq 1 900); do
  ru=$(wc -l <"$T/results-ru.jsonl"); rc=$(wc -l <"$T/results.jsonl"); now=$(date +%s%3N)
  [ "$rc" != "$last" ] && { last=$rc; tchange=$now; }
  age=$((now - tchange))
  [ "$rc" -gt 0 ] && [ "$ru" -ge $((rc + 20)) ] && [ $age -ge 1500 ] && [ $age -lt 8000 ] && break
  sleep 0.1
done
kill9 w0
note "w0 killed -9: read_uncommitted $ru records, read_committed $rc"
worker_start w1
feed_wait
wait_answered $N 200
sleep 3
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "w1 exited $WRC"
readers_stop
kill -TERM "$RU_PID"; wait "$RU_PID" 2>/dev/null
check --max-dup 0 || fail "the read_committed reader does not see each answer once"
python3 - "$T/results.jsonl" "$T/results-ru.jsonl" <<'PY' || fail "the read_uncommitted extras are not exactly the aborted answers"
import json, sys, collections
def load(p):
    return {(e["partition"], e["offset"]): e["value"]["custom_id"] for e in map(json.loads, open(p)) if e}
committed, seen = load(sys.argv[1]), load(sys.argv[2])
missing = set(committed) - set(seen)
assert not missing, "committed records a read_uncommitted reader missed: %d" % len(missing)
assert all(seen[k] == v for k, v in committed.items()), "records differ between the readers"
extras = {k: v for k, v in seen.items() if k not in committed}
once = collections.Counter(committed.values())
ids = collections.Counter(extras.values())
print("committed=%d read_uncommitted=%d extras(aborted)=%d" % (len(committed), len(seen), len(extras)))
assert extras, "no aborted answer: the kill did not land in an open transaction"
assert all(once[c] == 1 for c in ids), "an aborted answer's request is not answered exactly once in committed records"
assert all(n == 1 for n in ids.values()), "a request has more than one aborted answer after a single abort"
dups = sum(n - 1 for n in collections.Counter(seen.values()).values() if n > 1)
assert dups == len(extras), "read_uncommitted duplicates (%d) are not exactly the aborted records (%d)" % (dups, len(extras))
PY
echo "PASS: read_uncommitted extras are exactly the aborted answers; read_committed: lost 0, dup 0"
