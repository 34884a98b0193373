#!/usr/bin/env python3
"""check_openai_shapes.py — validates krill's committed sample answers
(tests/data/openai/*.json, written by build/tests/test_codec_surface with
KRILL_WRITE_OPENAI_SAMPLES=tests/data/openai and compared with what the codec encodes
on every `make test`) against the official openai SDK's response types, strictly:
every field krill writes must be a field of the SDK's model (extra="forbid" on a
subclass of each type), and the SDK must parse every choice, logprob and usage field
with the expected values.

Run: KRILL_REF_VENV=/work/refvenv; $KRILL_REF_VENV/bin/python tests/reference/check_openai_shapes.py
(openai pinned in tests/reference/requirements.txt). Exit 0 when all validate."""
import glob
import json
import os
import sys

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion


def strict(model_cls, data, path="body"):
    """model_validate, then check that no key of data was dropped as unknown."""
    obj = model_cls.model_validate(data)
    extra = obj.model_extra or {}
    if extra:
        raise ValueError(f"{path}: fields unknown to {model_cls.__name__}: {sorted(extra)}")
    for name, value in data.items():
        sub = getattr(obj, name, None)
        if isinstance(value, dict) and hasattr(sub, "model_validate"):
            strict(type(sub), value, f"{path}.{name}")
        elif isinstance(value, list):
            items = sub if isinstance(sub, list) else []
            for i, (v, s) in enumerate(zip(value, items)):
                if isinstance(v, dict) and hasattr(s, "model_validate"):
                    strict(type(s), v, f"{path}.{name}[{i}]")
    return obj


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "openai")
    files = sorted(glob.glob(os.path.join(root, "*.json")))
    if not files:
        print("no samples in", root)
        return 1
    bad = 0
    for f in files:
        line = json.load(open(f))
        body = line["response"]["body"]
        try:
            if body["object"] == "chat.completion":
                c = strict(ChatCompletion, body)
                for ch in c.choices:
                    if ch.logprobs is not None:
                        for t in ch.logprobs.content:
                            assert t.bytes is not None and len(t.bytes) > 0, "chat logprob without bytes"
                            assert isinstance(t.top_logprobs, list)
            else:
                c = strict(Completion, body)
                for ch in c.choices:
                    if ch.logprobs is not None:
                        lp = ch.logprobs
                        n = len(lp.tokens)
                        assert len(lp.token_logprobs) == n and len(lp.top_logprobs) == n and len(lp.text_offset) == n
            u = c.usage
            assert u.total_tokens == u.prompt_tokens + u.completion_tokens
            assert u.prompt_tokens_details is not None and u.prompt_tokens_details.cached_tokens is not None
            print(f"ok   {os.path.basename(f)} ({type(c).__name__}, {len(c.choices)} choice(s))")
        except Exception as e:  # report every file, then fail
            bad += 1
            print(f"FAIL {os.path.basename(f)}: {e}")
    print(f"openai {openai.__version__}: {len(files) - bad}/{len(files)} sample answers validate")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
