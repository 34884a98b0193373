# common.sh — shared by the Kafka integration tests (sourced, bash).
#
# Each test gets a private temp dir ($T), its own broker on a free port
# (scripts/kafka-local.sh with a private state dir) and a trap that stops every worker
# it started and the broker. Prerequisites that are missing (java, mvn or the cached
# jars, the Python used to write the tiny model, the default model) make the test exit
# 77 with "SKIP: <why>"; a broker that cannot start is a skip too.
# KRILL_KEEP_TMP=1 keeps $T (logs, results) for a look after a failure.

set -uo pipefail
root=$(pwd)
B=${KRILL_BUILD:-$root/build}
PY=${KRILL_PY:-$root/.cache/pyenv/bin/python}
LIB=$root/tests/integration/lib
T=$(mktemp -d "${TMPDIR:-/tmp}/krill-it.XXXXXX")
declare -A WPID=()
BROKERS=""
KAFKA_UP=0

skip() { echo "SKIP: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  for f in "$T"/w*.log; do [ -f "$f" ] && { echo "--- tail of $f"; tail -n 15 "$f"; }; done
  exit 1
}
note() { echo "[$(date +%H:%M:%S)] $*"; }

cleanup() {
  local n
  for n in "${!WPID[@]}"; do kill -KILL "${WPID[$n]}" 2>/dev/null; done
  [ -n "${RESULTS_PID:-}" ] && kill -TERM "$RESULTS_PID" 2>/dev/null
  [ -n "${DLQ_PID:-}" ] && kill -TERM "$DLQ_PID" 2>/dev/null
  # a feeder still running (the test failed mid-stream): stop its enqueue, then it
  if [ -n "${FEED_PID:-}" ]; then pkill -TERM -P "$FEED_PID" 2>/dev/null; kill -TERM "$FEED_PID" 2>/dev/null; fi
  # any other background job a test started (an extra reader, a stats poller): the wait
  # below would otherwise block on it forever when the test fails before stopping it
  local j
  for j in $(jobs -p); do kill -TERM "$j" 2>/dev/null; done
  wait 2>/dev/null
  [ "$KAFKA_UP" = 1 ] && scripts/kafka-local.sh stop >/dev/null 2>&1
  if [ "${KRILL_KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_bins() {
  local b
  for b in krill-worker krill-enqueue krill-results "$@"; do
    [ -x "$B/$b" ] || skip "$B/$b is not built (make build)"
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a private broker and creates the krill topics with $1 partitions (default 4).
broker_start() {
  command -v java >/dev/null 2>&1 || skip "java not found (scripts/setup.sh installs a JDK)"
  local version; version=$(sed -n 's/^version=\${KRILL_KAFKA_VERSION:-\(.*\)}$/\1/p' scripts/kafka-local.sh)
  if [ ! -f "${KRILL_KAFKA_CACHE:-$root/.cache/kafka}/${KRILL_KAFKA_VERSION:-$version}/libs/.complete" ]; then
    command -v mvn >/dev/null 2>&1 || skip "mvn not found and the Kafka jars are not cached"
  fi
  export KRILL_KAFKA_PORT; KRILL_KAFKA_PORT=$(free_port)
  export KRILL_KAFKA_STATE=$T/kafka
  local out
  out=$(scripts/kafka-local.sh start 2>"$T/kafka-start.log") || skip "the local Kafka broker cannot start: $(tail -n 3 "$T/kafka-start.log" | tr '\n' ' ')"
  KAFKA_UP=1
  BROKERS=$(echo "$out" | tail -n 1)
  scripts/kafka-local.sh topics --partitions "${1:-4}" >"$T/topics.log" 2>&1 || fail "cannot create topics: $(cat "$T/topics.log")"
  note "broker $BROKERS up"
}

# The tiny synthetic model (real tokenizer), generated once per build dir.
tiny_model() {
  TINY=$B/test-models/tiny.gguf
  [ -f "$TINY" ] && return 0
  local src=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
  [ -f "$src" ] || skip "default model $src missing (scripts/fetch-model.sh); the tiny model copies its tokenizer"
  "$PY" -c 'import gguf, numpy' 2>/dev/null || skip "$PY lacks gguf/numpy (scripts/setup.sh creates it)"
  mkdir -p "$B/test-models"
  "$PY" "$LIB/make_tiny_model.py" "$src" "$TINY.tmp" >"$T/tiny.log" 2>&1 || fail "make_tiny_model.py failed: $(tail -n 5 "$T/tiny.log")"
  mv "$TINY.tmp" "$TINY"
}

# worker_start NAME [--set k=v]...: a krill-worker in the background, log $T/NAME.log.
# Its /metrics listens on a free port (several workers run at once); a later --set
# metrics.listen=... wins.
WORKER_SETS=()
worker_start() {
  local name=$1; shift
  "$B/krill-worker" --set kafka.brokers="$BROKERS" --set worker.id="$name" --set stats.interval_ms=1000 \
    --set metrics.listen=127.0.0.1:"$(free_port)" \
    --set 'kafka.properties+=consumer.session.timeout.ms=6000' \
    --set 'kafka.properties+=consumer.heartbeat.interval.ms=500' \
    --set 'kafka.properties+=consumer.auto.commit.interval.ms=200' \
    "${WORKER_SETS[@]}" "$@" >>"$T/$name.log" 2>&1 &
  WPID[$name]=$!
  note "worker $name started (pid ${WPID[$name]})"
}

worker_alive() { kill -0 "${WPID[$1]}" 2>/dev/null; }

# test_seed: RANDOM seeded from KRILL_TEST_SEED (else the clock), noted so a run can be repeated.
test_seed() {
  seed=${KRILL_TEST_SEED:-$(( $(date +%s) % 100000 ))}
  RANDOM=$seed
  note "seed $seed"
}

# wait_assigned NAME [TRIES]: until NAME's log says "partitions assigned" (TRIES x 0.1 s,
# default 300); fails when it never does.
wait_assigned() {
  local _
  for _ in $(seq 1 "${2:-300}"); do grep -q "partitions assigned" "$T/$1.log" 2>/dev/null && return 0; sleep 0.1; done
  fail "$1 got no partitions in $(( ${2:-300} / 10 )) s"
}

# kill9 NAME: kill -9 a worker and forget it.
kill9() { kill -KILL "${WPID[$1]}"; wait "${WPID[$1]}" 2>/dev/null; unset "WPID[$1]"; }

# kill9_rounds K: K times, a random 0.3-2.2 s (RANDOM) after worker w$kills got its
# partitions, kill -9 it and start w$((kills + 1)) in its place; $kills counts them
# (starts at 0, the first worker being w0).
kill9_rounds() {
  local k cur
  kills=0
  for k in $(seq 1 "$1"); do
    cur=w$kills
    wait_assigned "$cur"
    sleep "$(( 3 + RANDOM % 20 ))e-1"
    a0=$(answered)
    kill9 "$cur"
    kills=$((kills + 1))
    note "kill -9 #$kills: $a0 answered before"
    worker_start "w$kills"
  done
}

# shared_work W...: every named worker answered a share of $T/results.jsonl.
shared_work() {
  python3 - "$T/results.jsonl" "$@" <<'PY'
import json, sys, collections
c = collections.Counter(json.loads(l)["value"]["krill"]["worker"] for l in open(sys.argv[1]) if l.strip())
print("answers per worker:", dict(c))
assert all(c[w] > 0 for w in sys.argv[2:])
PY
}

# worker_stop NAME SIGNAL: signals it and waits; its exit status is left in $WRC.
WRC=0
worker_stop() {
  local pid=${WPID[$1]}
  kill -"$2" "$pid" 2>/dev/null
  wait "$pid"; WRC=$?
  unset "WPID[$1]"
}

# eos_begin N SEED PREFIX MAX_TOKENS [GEN ARGS...]: the opening the exactly-once tests
# share: the tools, the tiny model, a 4-partition broker, N valid requests (plus what
# the extra gen arguments ask for) and the two readers started.
eos_begin() {
  local n=$1 seed=$2 prefix=$3 max_tokens=$4
  shift 4
  need_bins
  tiny_model
  broker_start 4
  gen --valid "$n" --seed "$seed" --max-tokens "$max_tokens" --prefix "$prefix" "$@"
  readers_start
}

# Readers that follow the results and DLQ topics from the beginning into files.
readers_start() {
  "$B/krill-results" -q -b "$BROKERS" -t krill.results --from-beginning --envelope >"$T/results.jsonl" 2>"$T/results.err" &
  RESULTS_PID=$!
  "$B/krill-results" -q -b "$BROKERS" -t krill.dlq --from-beginning --envelope >"$T/dlq.jsonl" 2>"$T/dlq.err" &
  DLQ_PID=$!
}
readers_stop() {
  sleep 1
  kill -TERM "$RESULTS_PID" "$DLQ_PID" 2>/dev/null
  wait "$RESULTS_PID" "$DLQ_PID" 2>/dev/null
  RESULTS_PID=""; DLQ_PID=""
}

# answered: how many expected ids have their answer so far (progress).
answered() {
  python3 "$LIB/check_results.py" "$T/expect.jsonl" "$T/results.jsonl" --partial --quiet 2>/dev/null |
    sed -n 's/.* answered=\([0-9]*\) .*/\1/p'
}

# wait_answered N TIMEOUT_S: until N ids are answered; fails on timeout.
wait_answered() {
  local want=$1 deadline=$((SECONDS + $2)) got=0
  local n alive
  while [ $SECONDS -lt $deadline ]; do
    got=$(answered); got=${got:-0}
    [ "$got" -ge "$want" ] && return 0
    alive=0
    for n in "${!WPID[@]}"; do kill -0 "${WPID[$n]}" 2>/dev/null && alive=1; done
    [ ${#WPID[@]} -gt 0 ] && [ $alive = 0 ] && fail "no worker is running ($got of $want answered)"
    sleep 0.5
  done
  fail "timed out: $got of $want requests answered after $2 s"
}

# check ARGS...: the checker over everything read so far (readers must be stopped).
check() { python3 "$LIB/check_results.py" "$T/expect.jsonl" "$T/results.jsonl" --dlq "$T/dlq.jsonl" "$@"; }

enqueue() { "$B/krill-enqueue" -q -b "$BROKERS" -t krill.requests "$@" 2>"$T/enqueue.log" || fail "enqueue failed: $(tail -n 3 "$T/enqueue.log")"; }

gen() { python3 "$LIB/gen_requests.py" "$@" "$T/requests.jsonl" "$T/expect.jsonl"; }

# gen_more NAME N: N more valid requests (ids NAME-*) in $T/NAME.jsonl, their
# expectations appended to $T/expect.jsonl (tests that enqueue in several rounds).
gen_more() {
  python3 "$LIB/gen_requests.py" --valid "$2" --seed "${#1}$2" --max-tokens 2 --prefix "$1" \
    "$T/$1.jsonl" "$T/$1.expect" || fail "gen_requests failed"
  cat "$T/$1.expect" >>"$T/expect.jsonl"
}

# feed_start CHUNK PERIOD_S: sends $T/requests.jsonl in chunks of CHUNK lines every
# PERIOD_S seconds in the background (so faults land mid-stream whatever the engine's
# speed); feed_wait waits for the last chunk. Each enqueue may wait up to 300 s for the
# broker (tests stop it on purpose; the cleanup stops the feeder when a test fails).
feed_start() {
  mkdir -p "$T/chunks"
  split -l "$1" -d -a 4 "$T/requests.jsonl" "$T/chunks/c"
  (
    for c in "$T"/chunks/c*; do
      "$B/krill-enqueue" -q --timeout 300 -b "$BROKERS" -t krill.requests --format mixed "$c" 2>>"$T/enqueue.log" ||
        echo "enqueue of $c failed" >>"$T/feed.err"
      sleep "$2"
    done
  ) &
  FEED_PID=$!
}
feed_wait() {
  wait "$FEED_PID"
  [ -s "$T/feed.err" ] && fail "feeding failed: $(cat "$T/feed.err")"
  return 0
}

# kcat_results N TIMEOUT_S: reads krill.results with kcat (-J: headers as a list, so
# repeated names stay visible) into $T/results.json until it holds N records; fails on
# timeout or when worker w0 stops. Then waits 1 s more and reads again (late duplicates).
kcat_results() {
  local deadline=$((SECONDS + $2))
  while :; do
    kcat -C -b "$BROKERS" -t krill.results -e -q -J >"$T/results.json" 2>/dev/null
    [ "$(wc -l <"$T/results.json")" -ge "$1" ] && break
    worker_alive w0 || fail "the worker stopped ($(wc -l <"$T/results.json") of $1 answered)"
    [ $SECONDS -lt "$deadline" ] || fail "timed out: $(wc -l <"$T/results.json") of $1 answered after $2 s"
    sleep 0.5
  done
  sleep 1
  worker_alive w0 || fail "the worker stopped"
  kcat -C -b "$BROKERS" -t krill.results -e -q -J >"$T/results.json" 2>/dev/null
}

# http URL: GET it; prints the status code (0 when nothing answers) on the first line,
# then the body.
http() { "$PY" - "$@" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
except Exception as e:
    print(0); print(e)
PY
}
