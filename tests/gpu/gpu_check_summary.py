#!/usr/bin/env python3
"""gpu_check_summary.py — turns one scripts/gpu-check.sh run into DIR/summary.json and
DIR/summary.md (a markdown section ready to paste into docs/benchmarks.md).

Standard library only (it runs on bare GPU machines and in make test). It reads what
the steps left in DIR and never fails on a missing or broken file: a figure whose step
did not produce it is reported "not measured" with that step's status and reason.

Inputs in DIR (written by gpu-check.sh):
  steps.tsv    one line per step: id, status (pass|fail|skip|timeout|unsupported),
               seconds, budget seconds, output file or "-", reason (tabs/newlines removed)
  env.tsv      key, value: card, sm, memory, driver, nvcc, torch, transformers, commit,
               date, mode (gpu | dry-run), budget_s
  models.tsv   GGUF name, bytes (the weights a batch-1 step streams with native weights)
  ops.json     gpu_ops --json (every op vs the CPU backend)
  parity_*.json gpu_parity --json; copybw.json {"gbs": read+write GB/s, "method": ...};
  bench_<id>.json krill-bench --json of step <id>; smi_<id>.csv nvidia-smi utilisation samples
Goals (issue 17): Llama-1B shape >= 45,000 output tok/s, SmolLM2 shape >= 100,000;
batch 1: Llama-1B <= 0.8 ms/token (bf16) and <= 0.4 ms (Q4), SmolLM2 <= 0.4 ms; the
7B shape with Q4_K weights at batch 1 streams its weights at >= 50 % of the copy
bandwidth (bytes read per token / time per token, over the device-to-device copy's
read + write GB/s, the convention of gpu_ops' roofline).

Usage: gpu_check_summary.py DIR   (prints the markdown; exit 0, or 2 on bad usage)
"""
import json
import os
import sys

# bf16 parameters of the synthetic shapes (tied embeddings counted once): a decode step
# streams 2 bytes per parameter when the weights are bf16
PARAMS = {"llama1b": 1235814400, "smol": 134515008, "llama7b": 6607343616}

# one row per figure: step id, label, how to read it, goal (op, value) or None
THROUGHPUT = [
    ("tput-1b-256", "Llama-1B shape, 256 seqs / 2048 tokens", (">=", 45000)),
    ("tput-1b-1024", "Llama-1B shape, 1024 seqs / 8192 tokens", (">=", 45000)),
    ("tput-smol-256", "SmolLM2 shape, 256 seqs / 2048 tokens", (">=", 100000)),
    ("tput-smol-1024", "SmolLM2 shape, 1024 seqs / 8192 tokens", (">=", 100000)),
]
BATCH1 = [
    ("b1-1b-bf16", "Llama-1B shape, bf16 weights", ("<=", 0.8), "llama1b", "bf16"),
    ("b1-1b-q4_0", "Llama-1B shape, Q4_0 weights (native)", ("<=", 0.4), "llama1b-q4_0", "native"),
    ("b1-1b-q8_0", "Llama-1B shape, Q8_0 weights (native)", None, "llama1b-q8_0", "native"),
    ("b1-smol-bf16", "SmolLM2 shape, bf16 weights", ("<=", 0.4), "smol", "bf16"),
    ("b1-7b-q4_k", "7B shape, Q4_K weights (native)", None, "llama7b-q4_k", "native"),
]
FRACTION_GOAL = (">=", 0.5)  # of the copy bandwidth, 7B Q4_K at batch 1


def gpu_check_summary_load(path):
    """The JSON object in path, or None (missing, empty or broken file)."""
    try:
        with open(path) as f:
            v = json.load(f)
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def gpu_check_summary_table(path, ncols):
    """Rows of a tab-separated file with exactly ncols fields (others are skipped)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == ncols:
                    rows.append(parts)
    except OSError:
        pass
    return rows


def gpu_check_summary_num(v):
    """A finite float from v, or None."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None


def gpu_check_summary_util(path):
    """Mean of nvidia-smi's utilisation samples (one percentage a line), or None."""
    try:
        with open(path) as f:
            v = [x for x in (gpu_check_summary_num(line) for line in f) if x is not None]
    except OSError:
        return None
    return sum(v) / len(v) if v else None


def gpu_check_summary_goal(value, goal):
    """'met', 'missed', 'no goal' or 'not measured'."""
    if goal is None:
        return "no goal"
    if value is None:
        return "not measured"
    op, target = goal
    return "met" if (value >= target if op == ">=" else value <= target) else "missed"


def gpu_check_summary_fmt(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.3g}"
    return s + unit


def gpu_check_summary_ops(ops):
    """Per-op counts from gpu_ops' JSON: {op: {checks, pass, fail, unsupported, worst}}."""
    per = {}
    for r in (ops or {}).get("results", []) if isinstance((ops or {}).get("results"), list) else []:
        if not isinstance(r, dict) or r.get("status") == "BENCH":
            continue
        o = per.setdefault(str(r.get("op")), {"checks": 0, "pass": 0, "fail": 0, "unsupported": 0, "worst": 0.0})
        o["checks"] += 1
        st = str(r.get("status", "")).upper()
        if st == "PASS":
            o["pass"] += 1
        elif st == "UNSUPPORTED":
            o["unsupported"] += 1
        elif st.startswith("SKIP"):
            o["checks"] -= 1
        else:
            o["fail"] += 1
        err, tol = gpu_check_summary_num(r.get("err")), gpu_check_summary_num(r.get("tol"))
        if err is not None and tol:
            o["worst"] = max(o["worst"], err / tol)
    return per


def gpu_check_summary_build(out):
    """The summary object for run directory out."""
    env = {k: v for k, v in gpu_check_summary_table(os.path.join(out, "env.tsv"), 2)}
    steps = {}
    order = []
    for sid, status, secs, budget, fname, reason in gpu_check_summary_table(os.path.join(out, "steps.tsv"), 6):
        steps[sid] = {"id": sid, "status": status, "seconds": gpu_check_summary_num(secs),
                      "budget_s": gpu_check_summary_num(budget), "file": None if fname == "-" else fname,
                      "reason": reason}
        if sid not in order:
            order.append(sid)
    model_bytes = {n: gpu_check_summary_num(b) for n, b in gpu_check_summary_table(os.path.join(out, "models.tsv"), 2)}

    def data(sid):
        st = steps.get(sid)
        if not st or st["status"] != "pass" or not st["file"]:
            return None
        return gpu_check_summary_load(os.path.join(out, st["file"]))

    def why(sid):
        st = steps.get(sid)
        if not st:
            return "step not run"
        if st["status"] == "pass":
            return "no figure in its output"
        return f"{st['status']}: {st['reason']}" if st["reason"] else st["status"]

    figures = []

    def figure(fid, label, value, unit, goal, sid, extra=None):
        f = {"id": fid, "label": label, "value": value, "unit": unit,
             "goal": None if goal is None else f"{goal[0]} {gpu_check_summary_fmt(float(goal[1]), unit)}",
             "status": gpu_check_summary_goal(value, goal), "step": sid}
        if value is None:
            f["why"] = why(sid)
        if extra:
            f.update(extra)
        figures.append(f)

    # copy bandwidth: the dedicated step, else gpu_ops' roofline when it ran
    copy = gpu_check_summary_num((data("copybw") or {}).get("gbs"))
    ops = data("ops") or (gpu_check_summary_load(os.path.join(out, "ops.json")) if steps.get("ops") else None)
    if copy is None and ops and gpu_check_summary_num(ops.get("copy_gbs")):
        copy = gpu_check_summary_num(ops.get("copy_gbs"))
    figure("copy_gbs", "HBM device-to-device copy (read + write)", copy, " GB/s", None, "copybw")

    # ops
    per = gpu_check_summary_ops(ops)
    n_checks = sum(o["checks"] for o in per.values())
    n_fail = sum(o["fail"] for o in per.values())
    n_uns = sum(o["unsupported"] for o in per.values())
    figure("ops_failed", f"op checks vs the CPU backend: failed + unsupported of {n_checks}",
           float(n_fail + n_uns) if per else None, "", ("<=", 0), "ops")

    # parity: krill CUDA vs the reference gpu_parity was given (transformers bf16 on a
    # GPU; krill's CPU backend in an emulator dry run), prefill and decode paths
    par = data("parity") or {}
    refs = [r for r in par.get("references", []) if isinstance(r, dict)] if isinstance(par.get("references"), list) else []
    ref = next((r for r in refs if "transformers" in str(r.get("name"))), refs[0] if refs else None)
    rel = agree = None
    if ref:
        rel = max(gpu_check_summary_num((ref.get(p) or {}).get("rel_max")) or 0.0 for p in ("prefill", "decode"))
        agree = min(gpu_check_summary_num((ref.get(p) or {}).get("agree")) or 0.0 for p in ("prefill", "decode"))
    what = (f"{os.path.basename(str(par.get('model', '?')))} on {par.get('backend', '?')} vs {ref.get('name')}"
            if ref else "Llama-1B shape vs transformers bf16")
    figure("parity_rel_max", f"parity, {what}: max relative error (prefill, decode)", rel, "", ("<=", 0.02), "parity")
    figure("parity_agree", f"parity, {what}: greedy tokens identical", agree, "", (">=", 0.9), "parity")

    # throughput
    for sid, label, goal in THROUGHPUT:
        b = data(sid) or {}
        v = gpu_check_summary_num(b.get("output_tok_per_s"))
        extra = {k: b[k] for k in ("tpot_ms_p50", "ttft_ms_p50", "mean_seqs_per_step", "graph_captures",
                                   "graph_replays", "gpu_idle_ms", "gpu_busy_ms") if k in b}
        util = gpu_check_summary_util(os.path.join(out, f"smi_{sid}.csv"))
        if util is not None:
            extra["gpu_utilisation_pct"] = util
        figure(sid, f"offline throughput, {label}", v, " tok/s", goal, sid, extra)

    # batch 1
    for sid, label, goal, model, weights in BATCH1:
        b = data(sid) or {}
        v = gpu_check_summary_num(b.get("tpot_ms_p50"))
        st = steps.get(sid, {})
        ran_weights = "bf16" if "weights as bf16" in st.get("reason", "") else weights
        if ran_weights == "native":
            nbytes = model_bytes.get(model)
        else:
            shape = model.split("-")[0]
            nbytes = 2.0 * PARAMS[shape] if shape in PARAMS else None
        extra = {"weights": ran_weights, "bytes_per_token": nbytes}
        if sid == "b1-7b-q4_k":
            label = label if ran_weights == "native" else "7B shape, Q4_K file, weights as bf16"
            figure(sid, f"batch 1, {label}", v, " ms/token", None, sid, extra)
            frac = nbytes / (v * 1e-3) / (copy * 1e9) if v and nbytes and copy else None
            figure("b1-7b-q4_k-fraction", f"batch 1, {label}: weight stream / copy bandwidth", frac, "",
                   FRACTION_GOAL if ran_weights == "native" else None, sid if copy else "copybw")
        else:
            figure(sid, f"batch 1, {label}", v, " ms/token", goal, sid, extra)

    statuses = [s["status"] for s in steps.values()]
    return {
        "card": env.get("card") or None, "sm": env.get("sm") or None, "memory": env.get("memory") or None,
        "driver": env.get("driver") or None, "nvcc": env.get("nvcc") or None, "torch": env.get("torch") or None,
        "transformers": env.get("transformers") or None, "commit": env.get("commit") or None,
        "date": env.get("date") or None, "mode": env.get("mode") or None,
        "budget_s": gpu_check_summary_num(env.get("budget_s")),
        "seconds": sum(s["seconds"] or 0 for s in steps.values()),
        "steps": [steps[s] for s in order], "figures": figures,
        "ops": per, "ops_checks": n_checks,
        "counts": {k: statuses.count(k) for k in ("pass", "fail", "skip", "timeout", "unsupported")},
        "goals": {k: sum(1 for f in figures if f["status"] == k) for k in ("met", "missed", "not measured")},
    }


def gpu_check_summary_markdown(s):
    """The markdown section for docs/benchmarks.md."""
    card = s["card"] or "no GPU"
    lines = [f"### gpu-check: {card}, {s['date'] or '?'}, commit {s['commit'] or '?'}", ""]
    lines.append(f"`scripts/gpu-check.sh` ({s['mode'] or '?'}): {card}"
                 + (f" ({s['memory']}, sm_{s['sm']}, driver {s['driver']})" if s["sm"] else "")
                 + f"; nvcc {s['nvcc'] or '—'}; torch {s['torch'] or '—'}, transformers {s['transformers'] or '—'}; "
                 f"{s['seconds']:.0f} s of steps within a {s['budget_s'] or 0:.0f} s budget. Synthetic models "
                 "(tests/gpu/write_models.py), 4 096 requests x (128 prompt + 128 output) tokens, ignore_eos; "
                 "batch 1 = one request, 128 + 128 tokens, TPOT p50.")
    lines += ["", "| figure | measured | goal | status |", "|---|---:|---|---|"]
    for f in s["figures"]:
        if f["value"] is None:
            meas = f"not measured ({f.get('why', '')})".replace("|", "/")
        elif f["id"].endswith("fraction") or f["id"] == "parity_agree":
            meas = f"{100 * f['value']:.1f} %"
        elif f["id"] == "parity_rel_max":
            meas = f"{f['value']:.4f}"
        else:
            meas = gpu_check_summary_fmt(f["value"], f["unit"])
            notes = []
            if f["id"].startswith("tput-") and gpu_check_summary_num(f.get("tpot_ms_p50")) is not None:
                notes.append(f"TPOT p50 {f['tpot_ms_p50']:.3g} ms")
            if gpu_check_summary_num(f.get("mean_seqs_per_step")) is not None:
                notes.append(f"{f['mean_seqs_per_step']:.0f} seqs/step")
            if f["id"].startswith("b1-") and gpu_check_summary_num(f.get("bytes_per_token")):
                notes.append(f"{f['weights']} weights, {f['bytes_per_token'] / 1e9:.2f} GB a token")
            if gpu_check_summary_num(f.get("gpu_utilisation_pct")) is not None:
                notes.append(f"GPU util. {f['gpu_utilisation_pct']:.0f} %")
            if notes:
                meas += " (" + ", ".join(notes) + ")"
        goal = f["goal"] or "—"
        if f["id"].endswith("fraction") and f["goal"]:
            goal = ">= 50 %"
        elif f["id"] == "parity_agree":
            goal = ">= 90 %"
        lines.append(f"| {f['label']} | {meas} | {goal} | {f['status']} |")
    if s["ops"]:
        lines += ["", f"Op checks (gpu_ops, every op vs the CPU backend, {s['ops_checks']} checks):", "",
                  "| op | checks | passed | failed | unsupported | worst err / tol |", "|---|---:|---:|---:|---:|---:|"]
        for op, o in sorted(s["ops"].items()):
            lines.append(f"| {op} | {o['checks']} | {o['pass']} | {o['fail']} | {o['unsupported']} | {o['worst']:.2f} |")
    lines += ["", "| step | status | seconds / budget | note |", "|---|---|---:|---|"]
    for st in s["steps"]:
        secs = "—" if st["seconds"] is None else f"{st['seconds']:.0f}"
        bud = "—" if st["budget_s"] is None else f"{st['budget_s']:.0f}"
        lines.append(f"| {st['id']} | {st['status']} | {secs} / {bud} | {st['reason'].replace('|', '/')} |")
    c, g = s["counts"], s["goals"]
    lines += ["", f"Steps: {c['pass']} passed, {c['fail']} failed, {c['skip']} skipped, {c['timeout']} timed out, "
              f"{c['unsupported']} not supported by this build. Goals: {g['met']} met, {g['missed']} missed, "
              f"{g['not measured']} not measured.", ""]
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) == 2 else 2
    out = argv[1]
    s = gpu_check_summary_build(out)
    md = gpu_check_summary_markdown(s)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
