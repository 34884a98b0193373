#!/usr/bin/env python3
"""check_results.py — counts, per custom_id, what the worker answered (stdlib only).

  check_results.py EXPECT.jsonl RESULTS.jsonl [--dlq DLQ.jsonl] [--max-lost 0]
                   [--max-dup 0] [--max-unexpected 0] [--strict-dlq] [--quiet]

RESULTS and DLQ are `krill-results --envelope` output (one object per record with
topic/partition/offset/key/headers/value). EXPECT comes from gen_requests.py.

Counts:
  lost        ids expecting "200" with no 200 result
  dup         answers beyond the first for an id (sum of count-1), DLQ records beyond
              one per source offset
  unexpected  results whose custom_id is not in EXPECT
  wrong       ids whose answers have another status (or error code) than expected
  malformed   results missing a required field (usage, choices, headers, ...)
  dlq_missing undecodable messages without a DLQ record (with --strict-dlq: exact count)
Prints one summary line (key=value) and exits 1 when a count is over its limit
(wrong, malformed and dlq_missing must be 0).
"""
import argparse
import collections
import json
import sys


PARTIAL_OK = False  # --partial: a last line without its newline (a file still being written) is skipped


def load_jsonl(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        data = f.read()
    lines = data.split("\n")
    if PARTIAL_OK and lines and not data.endswith("\n"):
        lines = lines[:-1]
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            try:
                yield json.loads(line)
            except ValueError as e:
                raise SystemExit("%s:%d: not JSON: %s" % (path, n, e))


def check_result(env, problems):
    """Validates one result envelope; returns (custom_id, status, error_code)."""
    v = env.get("value")
    h = env.get("headers") or {}
    where = "%s:%s:%s" % (env.get("topic"), env.get("partition"), env.get("offset"))
    if not isinstance(v, dict):
        problems.append("%s: value is not an object" % where)
        return None, None, None
    cid = v.get("custom_id")
    if "krill-source" not in h:
        problems.append("%s: no krill-source header" % where)
    if not isinstance(v.get("id"), str) or not v["id"].startswith("krill-"):
        problems.append("%s: bad id" % where)
    resp = v.get("response")
    if not isinstance(resp, dict) or not isinstance(resp.get("status_code"), int):
        problems.append("%s: no response.status_code" % where)
        return cid, None, None
    st = resp["status_code"]
    body = resp.get("body")
    if not isinstance(body, dict):
        problems.append("%s: no response.body" % where)
        return cid, st, None
    if st == 200:
        if v.get("error") is not None:
            problems.append("%s: 200 with an error" % where)
        u = body.get("usage")
        if not (isinstance(u, dict) and all(isinstance(u.get(k), int) for k in
                                            ("prompt_tokens", "completion_tokens", "total_tokens"))
                and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
                and u["prompt_tokens"] > 0):
            problems.append("%s: bad usage %r" % (where, u))
        ch = body.get("choices")
        if not (isinstance(ch, list) and len(ch) == 1 and ch[0].get("finish_reason") in ("stop", "length")):
            problems.append("%s: bad choices" % where)
        else:
            c = ch[0]
            if body.get("object") == "chat.completion":
                if not (isinstance(c.get("message"), dict) and isinstance(c["message"].get("content"), str)):
                    problems.append("%s: chat choice without message.content" % where)
            elif body.get("object") == "text_completion":
                if not isinstance(c.get("text"), str):
                    problems.append("%s: completion choice without text" % where)
            else:
                problems.append("%s: unknown object %r" % (where, body.get("object")))
        k = v.get("krill")
        if not (isinstance(k, dict) and isinstance(k.get("total_ms"), (int, float))):
            problems.append("%s: no krill.total_ms" % where)
        return cid, st, None
    err = body.get("error")
    if not (isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("code"), str)):
        problems.append("%s: error result without body.error{message,code}" % where)
        return cid, st, None
    return cid, st, err["code"]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("expect")
    ap.add_argument("results")
    ap.add_argument("--dlq")
    ap.add_argument("--max-lost", type=int, default=0)
    ap.add_argument("--max-dup", type=int, default=0)
    ap.add_argument("--max-unexpected", type=int, default=0)
    ap.add_argument("--strict-dlq", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--partial", action="store_true", help="skip an unfinished last line (progress checks)")
    a = ap.parse_args(argv)
    global PARTIAL_OK
    PARTIAL_OK = a.partial

    expect = {}
    n_dlq_expected = 0
    for e in load_jsonl(a.expect):
        if e["expect"] in ("dlq", "dlq+400"):
            n_dlq_expected += 1
        if e.get("custom_id") is not None:
            expect[e["custom_id"]] = e
    problems = []
    answers = collections.defaultdict(list)
    unexpected = 0
    n_results = 0
    for env in load_jsonl(a.results):
        n_results += 1
        cid, st, code = check_result(env, problems)
        if cid not in expect:
            unexpected += 1
            if len(problems) < 50:
                problems.append("unexpected result for custom_id %r" % (cid,))
            continue
        answers[cid].append((st, code))
    lost = dup = wrong = 0
    for cid, e in expect.items():
        got = answers.get(cid, [])
        want = e["expect"]
        if want == "200":
            if not any(st == 200 for st, _ in got):
                lost += 1
                if lost <= 10:
                    problems.append("lost: %s (answers %r)" % (cid, got))
            bad = [g for g in got if g[0] != 200]
        elif want in ("400", "404", "dlq+400"):
            st_want = 404 if want == "404" else 400
            if not got:
                lost += 1
                if lost <= 10:
                    problems.append("lost: %s expected %s" % (cid, want))
            bad = [g for g in got if g[0] != st_want or (e.get("code") and g[1] != e["code"])]
        else:
            bad = []
        if bad:
            wrong += 1
            if wrong <= 10:
                problems.append("wrong answer for %s (%s, expected %s %s): %r" % (cid, e.get("kind", ""), want,
                                                                                 e.get("code", ""), bad))
        if len(got) > 1:
            dup += len(got) - 1
    n_dlq = 0
    dlq_dup = 0
    dlq_missing = 0
    if a.dlq:
        sources = collections.Counter()
        for env in load_jsonl(a.dlq):
            n_dlq += 1
            h = env.get("headers") or {}
            for k in ("krill-error-code", "krill-error-message", "krill-source"):
                if not isinstance(h.get(k), str) or not h.get(k):
                    problems.append("DLQ record %s:%s without header %s" % (env.get("partition"), env.get("offset"), k))
            sources[h.get("krill-source")] += 1
        dlq_dup = sum(c - 1 for c in sources.values() if c > 1)
        distinct = len(sources)
        if distinct < n_dlq_expected or (a.strict_dlq and distinct != n_dlq_expected):
            dlq_missing = n_dlq_expected - distinct
            problems.append("DLQ: %d distinct source messages, expected %d" % (distinct, n_dlq_expected))
    dup += dlq_dup
    malformed = sum(1 for p in problems if not p.startswith(("lost", "wrong", "unexpected", "DLQ: ")))
    summary = ("results=%d ids=%d answered=%d lost=%d dup=%d unexpected=%d wrong=%d malformed=%d dlq=%d "
               "dlq_expected=%d" % (n_results, len(expect), len(answers), lost, dup, unexpected, wrong, malformed,
                                    n_dlq, n_dlq_expected))
    if not a.quiet:
        for p in problems[:30]:
            print("  " + p, file=sys.stderr)
    print(summary)
    ok = (lost <= a.max_lost and dup <= a.max_dup and unexpected <= a.max_unexpected and wrong == 0
          and malformed == 0 and dlq_missing <= 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
