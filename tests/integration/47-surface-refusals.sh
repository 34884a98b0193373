#!/usr/bin/env bash
# 47-surface-refusals: 33 broken structured-output constraints, schemas, regexes,
# grammars and request-surface field types (response_format, guided_*,
# structured_outputs, logprobs, logit_bias, n, tools) through the real broker, JSON and
# msgpack mixed, then valid requests: each broken one is answered 400 with the
# expected code and `param` naming the field; the worker stays up and answers the
# valid ones.
# Two groups: "codec" cases are refused by the codec and pipeline (this branch) and
# must pass now; "compiler" cases are well-formed but only llguidance can reject them
# (a regex or grammar that does not compile, a schema it refuses). Those need the
# engine's llguidance part: until it is in the build the engine answers "... not
# available in this build" — still 400 invalid_value naming the field — and they are
# reported as pending, not counted as passed.
source tests/integration/lib/common.sh
need_bins
tiny_model
broker_start 2
python3 - "$T/requests.jsonl" "$T/expect.jsonl" "$T/cases.json" <<'PY'
import json, sys
M = [{"role": "user", "content": "Reply."}]
def chat(cid, extra): return {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                              "body": dict({"messages": M, "max_tokens": 4}, **extra)}
def cmpl(cid, extra): return {"custom_id": cid, "body": dict({"prompt": "x", "max_tokens": 4}, **extra)}
S = {"type": "object", "properties": {"a": {"type": "integer"}}}
C = [  # (group, builder, extra, code, param)
    ("codec", chat, {"response_format": "json"}, "invalid_type", "body.response_format"),
    ("codec", chat, {"response_format": {}}, "missing_field", "body.response_format.type"),
    ("codec", chat, {"response_format": {"type": "yaml"}}, "invalid_value", "body.response_format.type"),
    ("codec", chat, {"response_format": {"type": "json_schema"}}, "missing_field", "body.response_format.json_schema"),
    ("codec", chat, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}},
     "invalid_type", "body.response_format.json_schema.schema"),
    ("codec", chat, {"response_format": {"type": "json_schema", "json_schema": {"schema": S, "strict": "yes"}}},
     "invalid_type", "body.response_format.json_schema.strict"),
    ("codec", chat, {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "missing_field", "body.response_format.json_schema.schema"),
    ("codec", cmpl, {"guided_json": 42}, "invalid_type", "body.guided_json"),
    ("codec", cmpl, {"guided_json": "{not json"}, "invalid_value", "body.guided_json"),
    ("codec", cmpl, {"guided_json": "[1, 2]"}, "invalid_value", "body.guided_json"),
    ("codec", chat, {"guided_regex": ""}, "invalid_value", "body.guided_regex"),
    ("codec", chat, {"guided_regex": ["a"]}, "invalid_type", "body.guided_regex"),
    ("codec", chat, {"guided_choice": "yes"}, "invalid_type", "body.guided_choice"),
    ("codec", chat, {"guided_choice": []}, "invalid_value", "body.guided_choice"),
    ("codec", chat, {"guided_choice": ["a", 1]}, "invalid_type", "body.guided_choice[1]"),
    ("codec", chat, {"guided_grammar": {}}, "invalid_type", "body.guided_grammar"),
    ("codec", chat, {"structured_outputs": {}}, "invalid_value", "body.structured_outputs"),
    ("codec", chat, {"structured_outputs": {"regex": "a", "choice": ["b"]}}, "invalid_value",
     "body.structured_outputs.choice"),
    ("codec", chat, {"structured_outputs": {"structural_tag": "t"}}, "unsupported",
     "body.structured_outputs.structural_tag"),
    ("codec", chat, {"response_format": {"type": "json_object"}, "guided_regex": "x"}, "invalid_value",
     "body.guided_regex"),
    ("codec", chat, {"logprobs": 1}, "invalid_type", "body.logprobs"),
    ("codec", chat, {"logprobs": True, "top_logprobs": 25}, "invalid_value", "body.top_logprobs"),
    ("codec", chat, {"top_logprobs": 2}, "invalid_value", "body.top_logprobs"),
    ("codec", cmpl, {"logprobs": 9}, "invalid_value", "body.logprobs"),
    ("codec", chat, {"logit_bias": {"x": 1}}, "invalid_value", "body.logit_bias"),
    ("codec", chat, {"logit_bias": {"5": 500}}, "invalid_value", "body.logit_bias.5"),
    ("codec", chat, {"logit_bias": {"99999999": 1}}, "invalid_value", "body.logit_bias"),  # outside the vocabulary
    ("codec", chat, {"tools": [{"type": "function", "function": {"name": "f"}}]}, "unsupported", "body.tools"),
    ("codec", chat, {"n": 99}, "invalid_value", "body.n"),
    ("compiler", chat, {"guided_regex": "(unclosed"}, "invalid_value", "body.guided_regex"),
    ("compiler", chat, {"guided_grammar": "start: undefined_rule"}, "invalid_value", "body.guided_grammar"),
    ("compiler", chat, {"response_format": {"type": "json_schema", "json_schema": {"name": "x",
     "schema": {"type": "no-such-type"}}}}, "invalid_value", "body.response_format"),
    ("compiler", cmpl, {"structured_outputs": {"regex": "a{5,2}"}}, "invalid_value", "body.structured_outputs.regex"),
]
assert len(C) >= 30
cases = []
with open(sys.argv[1], "w") as r, open(sys.argv[2], "w") as e:
    for i, (group, b, extra, code, param) in enumerate(C):
        cid = "sr-%02d" % i
        r.write(json.dumps(b(cid, extra)) + "\n")
        e.write(json.dumps({"custom_id": cid, "expect": "400", "code": code}) + "\n")
        cases.append({"custom_id": cid, "group": group, "code": code, "param": param, "fields": sorted(extra)})
    for i in range(3):  # the worker is still up and answering
        cid = "sr-ok-%d" % i
        r.write(json.dumps(cmpl(cid, {"temperature": 0})) + "\n")
        e.write(json.dumps({"custom_id": cid, "expect": "200"}) + "\n")
json.dump(cases, open(sys.argv[3], "w"))
PY
n=$(wc -l <"$T/expect.jsonl")
enqueue --format mixed "$T/requests.jsonl"
readers_start
worker_start w0 --set model.path="$TINY"
wait_answered "$n" 120
worker_alive w0 || fail "the worker stopped on a broken request"
worker_stop w0 TERM
[ "$WRC" = 0 ] || fail "worker exited $WRC on SIGTERM"
readers_stop
check --strict-dlq || fail "answers are not as expected (status, code, or a DLQ record)"
python3 - "$T/results.jsonl" "$T/cases.json" <<'PY' || fail "a refusal does not name its field"
import json, sys
got = {}
for l in open(sys.argv[1]):
    v = json.loads(l)["value"]
    got[v["custom_id"]] = v["response"]
bad, passed, pending = [], 0, []
for c in json.load(open(sys.argv[2])):
    resp = got[c["custom_id"]]
    err = resp["body"].get("error") or {}
    msg = err.get("message", "")
    ok = resp["status_code"] == 400 and err.get("code") == c["code"] and err.get("param") == c["param"]
    if not ok:
        bad.append((c["custom_id"], c["fields"], resp["status_code"], err.get("code"), err.get("param"), msg))
    elif c["group"] == "compiler" and "not available in this build" in msg:
        pending.append(c["custom_id"])
    else:
        passed += 1
for b in bad:
    print("  WRONG", b)
print("  %d refusals name their field; %d compiler cases pending (engine without llguidance: %s)"
      % (passed, len(pending), ", ".join(pending) or "none"))
sys.exit(1 if bad else 0)
PY
echo "PASS: every broken request answered 400 naming its field, the worker stayed up"
