#!/usr/bin/env bash
# 38-eos-zombie: delivery.mode exactly_once. A worker stalls (SIGSTOP) in the middle of
# 1,500 requests; a replacement with the same worker.id (a restarted pod, a recreated
# container) starts: its init_transactions fences the stalled one's producer and aborts
# its open transaction, and it takes the partitions once the group drops the stalled
# member (session timeout 6 s). Then the zombie resumes (SIGCONT): it is fenced, commits
# nothing and exits 4. A read_committed reader sees lost 0, dup 0.
source tests/integration/lib/common.sh
N=1500
eos_begin $N 38 ez 3
WORKER_SETS=(--set model.path="$TINY" --set delivery.mode=exactly_once --set delivery.transaction_timeout_ms=20000)
worker_start w0 --set worker.id=zz
feed_start 50 1
wait_assigned w0
sleep 3
a0=$(answered)
kill -STOP "${WPID[w0]}"
note "w0 stopped (SIGSTOP) at $a0 answered"
worker_start w1 --set worker.id=zz
wait_assigned w1 600
sleep 2
note "w1 has the partitions at $(answered) answered; w0 resumes (SIGCONT)"
kill -CONT "${WPID[w0]}"
pid=${WPID[w0]}
for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the zombie still runs 60 s after SIGCONT"
wait "$pid"; zrc=$?; unset "WPID[w0]"
[ "$zrc" = 4 ] || fail "the zombie exited $zrc, not 4"
grep -q "fenced\|FENCED" "$T/w0.log" || fail "the zombie's log does not say it was fenced"
note "zombie exited $zrc: $(grep -m1 -o 'error="[^"]*[Ff]enced[^"]*"' "$T/w0.log" | cut -c1-160)"
feed_wait
wait_answered $N 200
sleep 2
worker_stop w1 TERM
[ "$WRC" = 0 ] || fail "w1 exited $WRC"
readers_stop
check --max-dup 0 || fail "not exactly once with a zombie"
echo "PASS: the zombie was fenced and exited 4; lost 0, dup 0"
