#!/usr/bin/env bash
# 23-worker-kill9: kill -9 the worker at 3 random moments during 2,000 requests,
# restarting it each time: nothing is lost, and the duplicates (answers acknowledged
# but not yet committed when the worker died) stay within what was uncommitted at
# each kill: at most queue_high in flight + what one auto-commit interval (200 ms
# here) answers, per kill. KRILL_TEST_SEED reproduces the kill moments.
source tests/integration/lib/common.sh
need_bins
tiny_model
test_seed
N=2000 QH=64
broker_start 4
gen --valid $N --seed 23 --max-tokens 2 --prefix k9
readers_start
WORKER_SETS=(--set model.path="$TINY" --set worker.queue_high=$QH --set worker.queue_low=$((QH / 2)))
# Each kill comes a random 0.3-2.2 s after the current worker got its partitions,
# while the feed (2,000 requests over 20 s) is still running.
t0=$SECONDS
worker_start w0
feed_start 50 0.5
kill9_rounds 3
feed_wait
wait_answered $N 300
dt=$((SECONDS - t0)); [ $dt -gt 0 ] || dt=1
worker_stop "w$kills" TERM
[ "$WRC" = 0 ] || fail "last worker exited $WRC on SIGTERM"
readers_stop
# The worker keeps up with the feed (100/s), so one 200 ms commit interval leaves at
# most ~20 answered and uncommitted; requests taken but unanswered are <= 2 x queue_high
# (the pause lands a burst late). A restarted worker's backlog burst is faster than
# the feed: count it at 1,000/s.
bound=$(( kills * (2 * QH + 1000 / 5 + 20) ))
note "kills=$kills elapsed=${dt}s dup bound $bound"
check --max-dup "$bound" || fail "lost or too many duplicates after $kills kills"
echo "PASS: $kills kill -9s, nothing lost"
