#!/usr/bin/env python3
"""compare_answers.py — do two sets of results give the same answers? (stdlib only)

  compare_answers.py A.jsonl B.jsonl [--ids EXPECT.jsonl]

Each file holds result lines (plain, or `krill-results --envelope` objects). For every
custom_id (only those in EXPECT when given) both sides must have exactly one answer,
equal in: status_code, error code and param (errors), object, choices (text or message
content, finish_reason) and usage. Fields that differ by nature are ignored: ids,
request_id, created, the "krill" object (worker, timings), and
usage.prompt_tokens_details.cached_tokens (how much of the prompt the prefix cache held
depends on what the engine saw before, not on the answer). Prints a summary line and
exits 1 on any difference.
"""
import argparse
import json
import sys


def load(path):
    out = {}
    dups = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            v = json.loads(line)
            if "value" in v and "headers" in v:
                v = v["value"]
            cid = v.get("custom_id")
            if cid in out:
                dups += 1
            out[cid] = v
    return out, dups


def essence(v):
    r = v.get("response") or {}
    b = r.get("body") or {}
    e = {"status": r.get("status_code")}
    if r.get("status_code") == 200:
        e["object"] = b.get("object")
        u = dict(b.get("usage") or {})
        u.pop("prompt_tokens_details", None)
        e["usage"] = u
        e["choices"] = [{"text": c.get("text"), "content": (c.get("message") or {}).get("content"),
                         "finish_reason": c.get("finish_reason")} for c in b.get("choices", [])]
    else:
        err = b.get("error") or {}
        e["code"] = err.get("code")
        e["param"] = err.get("param")
    return e


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ids")
    a = ap.parse_args(argv)
    A, da = load(a.a)
    Bm, db = load(a.b)
    if a.ids:
        ids = [json.loads(l).get("custom_id") for l in open(a.ids) if l.strip()]
        ids = [i for i in ids if i is not None]
    else:
        ids = sorted(set(A) | set(Bm), key=str)
    diff = missing = same = 0
    for cid in ids:
        if cid not in A or cid not in Bm:
            missing += 1
            if missing <= 5:
                print("  missing %r in %s" % (cid, a.a if cid not in A else a.b), file=sys.stderr)
            continue
        ea, eb = essence(A[cid]), essence(Bm[cid])
        if ea != eb:
            diff += 1
            if diff <= 5:
                print("  differs %r:\n    %s\n    %s" % (cid, json.dumps(ea)[:400], json.dumps(eb)[:400]),
                      file=sys.stderr)
        else:
            same += 1
    print("compared=%d same=%d differ=%d missing=%d dup_a=%d dup_b=%d" % (len(ids), same, diff, missing, da, db))
    return 0 if diff == 0 and missing == 0 and da == 0 and db == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
