#!/usr/bin/env python3
"""gen_requests.py — request sets for the integration tests (stdlib only, seeded).

Writes REQUESTS.jsonl (one Kafka record value per line, sent verbatim by
krill-enqueue) and EXPECT.jsonl (one line per request: what the worker must answer).

  gen_requests.py --valid N [--malformed M] [--seed S] [--max-tokens T] [--prefix P]
                  [--long-prompt-words W] REQUESTS.jsonl EXPECT.jsonl

expect values (docs/schema.md, src/worker/codec.h):
  "200"     a valid request: exactly one 200 result per processing
  "400"/"404" decodes but is invalid: one error result with that status (and "code")
  "dlq"     undecodable, no recognisable id: one DLQ record, no result
  "dlq+400" undecodable but with a recognisable custom_id: a DLQ record and a 400
Malformed messages cycle through every kind below, so M >= len(KINDS) covers them all.
"""
import json
import random
import sys

WORDS = ("apple river stone cloud lamp tiger music orange paper window garden silver "
         "engine yellow bridge candle forest winter summer planet ocean pencil rocket "
         "violin dragon castle mirror shadow thunder").split()


def valid(rng, cid, max_tokens, deterministic=False, greedy=False):
    kind = rng.random()
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
    if kind < 0.45:
        body = {"messages": [{"role": "user", "content": "Tell me about " + text}], "max_tokens": max_tokens}
        if rng.random() < 0.3:
            body["messages"].insert(0, {"role": "system", "content": "Be brief."})
        req = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
    elif kind < 0.7:
        req = {"custom_id": cid, "method": "POST", "url": "/v1/completions",
               "body": {"prompt": "The " + text, "max_tokens": max_tokens}}
    elif kind < 0.85:  # bare body, chat
        req = {"custom_id": cid, "body": {"messages": [{"role": "user", "content": text}],
                                          "max_completion_tokens": max_tokens}}
    else:  # bare body, completion, id instead of custom_id
        req = {"id": cid, "body": {"prompt": text, "max_tokens": max_tokens}}
    b = req["body"]
    r = rng.random()
    if r < 0.3:
        b["temperature"] = 0
    elif r < 0.6:
        b.update(temperature=0.8, top_p=0.9, seed=rng.randint(0, 10**6))
    elif r < 0.8:
        b.update(temperature=1.0, top_k=20, min_p=0.05, seed=rng.randint(0, 10**6))
    if rng.random() < 0.1:
        b["stop"] = ["\n\n"]
    if greedy:
        for k in ("top_p", "top_k", "min_p", "seed"):
            b.pop(k, None)
        b["temperature"] = 0
    if deterministic and b.get("temperature", 1) != 0 and "seed" not in b:
        b["seed"] = rng.randint(0, 10**6)
    return req


# (name, builder(cid, long_words) -> (bytes, expect, code))
def m_neg_max_tokens(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "max_tokens": -5}}), "400", "invalid_value"
def m_temp_type(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "temperature": "hot"}}), "400", "invalid_type"
def m_temp_range(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "temperature": 7}}), "400", "invalid_value"
def m_missing(cid, _):
    return json.dumps({"custom_id": cid, "body": {"max_tokens": 3}}), "400", "missing_field"
def m_n3(cid, _):  # n above input.max_n (8 by default)
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "n": 99}}), "400", "invalid_value"
def m_tools(cid, _):  # a field krill does not implement
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "tools": [{"type": "function"}]}}), "400", "unsupported"
def m_stream(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "stream": True}}), "400", "unsupported"
def m_too_many_stops(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}}), "400", "invalid_value"
def m_messages_type(cid, _):
    return json.dumps({"custom_id": cid, "body": {"messages": "hello"}}), "400", "invalid_type"
def m_empty_messages(cid, _):
    return json.dumps({"custom_id": cid, "body": {"messages": []}}), "400", "invalid_value"
def m_max_tokens_cap(cid, _):
    return json.dumps({"custom_id": cid, "body": {"prompt": "x", "max_tokens": 10**7}}), "400", "invalid_value"
def m_context(cid, words):
    prompt = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    return json.dumps({"custom_id": cid, "body": {"prompt": prompt, "max_tokens": 1}}), "400", "context_length_exceeded"
def m_truncated_with_id(cid, _):
    return '{"custom_id": "%s", "body": {"prompt": "trunc' % cid, "dlq+400", "invalid_json"
def m_not_json(cid, _):
    return "this is not json " + cid, "dlq", None
def m_array(cid, _):
    return json.dumps([cid, 1, 2]), "dlq", None
def m_scalar(cid, _):
    return "12345", "dlq", None
def m_deep(cid, _):
    return '{"a":' * 200 + "1" + "}" * 200, "dlq", None
def m_bad_utf8(cid, _):
    return b'{"prompt": "\xff\xfe bad utf8"}', "dlq", None
def m_msgpack_garbage(cid, _):
    return b"\x83\xa9custom_id", "dlq", None  # a map of 3 that ends after one key

KINDS = [m_neg_max_tokens, m_temp_type, m_temp_range, m_missing, m_n3, m_tools, m_stream, m_too_many_stops,
         m_messages_type, m_empty_messages, m_max_tokens_cap, m_context, m_truncated_with_id,
         m_not_json, m_array, m_scalar, m_deep, m_bad_utf8, m_msgpack_garbage]


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--valid", type=int, required=True)
    ap.add_argument("--malformed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=2)
    ap.add_argument("--prefix", default="r")
    ap.add_argument("--deterministic", action="store_true",
                    help="every valid request is greedy or seeded (same answer from any run)")
    ap.add_argument("--greedy", action="store_true", help="every valid request is greedy (temperature 0)")
    ap.add_argument("--long-prompt-words", type=int, default=3000,
                    help="words of the context_length_exceeded prompt (must exceed the model's context)")
    ap.add_argument("requests")
    ap.add_argument("expect")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    items = []
    for i in range(a.valid):
        cid = "%s-%06d" % (a.prefix, i)
        items.append((json.dumps(valid(rng, cid, a.max_tokens, a.deterministic, a.greedy)).encode(), {"custom_id": cid, "expect": "200"}))
    for j in range(a.malformed):
        cid = "%s-bad-%05d" % (a.prefix, j)
        kind = KINDS[j % len(KINDS)]
        val, exp, code = kind(cid, a.long_prompt_words)
        if isinstance(val, str):
            val = val.encode()
        assert b"\n" not in val
        e = {"custom_id": cid if exp != "dlq" else None, "expect": exp, "kind": kind.__name__[2:]}
        if code:
            e["code"] = code
        items.append((val, e))
    rng.shuffle(items)
    with open(a.requests, "wb") as fr, open(a.expect, "w") as fe:
        for val, e in items:
            fr.write(val + b"\n")
            fe.write(json.dumps(e) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
