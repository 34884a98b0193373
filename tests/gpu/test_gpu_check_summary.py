#!/usr/bin/env python3
"""test_gpu_check_summary.py — checks tests/gpu/gpu_check_summary.py on sample step
outputs (the files a gpu-check.sh run leaves), and write_models.py's quantized blocks.

1. A complete GPU run: every figure read from its step's file, compared with its goal
   (met and missed both appear), the ops table counted per op (a FAIL and an
   UNSUPPORTED row count against the goal), the 7B weight stream as a fraction of the
   copy bandwidth from the GGUF's bytes, summary.json and summary.md written.
2. A run with broken and missing files, a timed-out and an unsupported step: nothing
   raises, every figure says "not measured" with the step's status and reason.
3. write_models.py's Q4_0 / Q8_0 / Q4_K tiny models read back with the gguf package
   (an independent reader; skipped when it is not installed): every matrix has its
   type, finite values and about the bf16 models' spread.
Standard library (+ numpy/gguf for part 3). Exit 0 pass, 1 fail.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gpu_check_summary as gcs  # noqa: E402

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f"FAIL: {what}")


def write(d, name, text):
    with open(os.path.join(d, name), "w") as f:
        f.write(text)


def bench(tps, tpot):
    return json.dumps({"engine": "krill", "output_tok_per_s": tps, "tpot_ms_p50": tpot, "ttft_ms_p50": 900.0,
                       "mean_seqs_per_step": 250.5, "graph_captures": 12, "graph_replays": 900,
                       "gpu_busy_ms": 1000.0, "gpu_idle_ms": 50.0})


def fig(s, fid):
    return next(f for f in s["figures"] if f["id"] == fid)


def test_full_run(d):
    write(d, "env.tsv", "card\tNVIDIA H200\nsm\t90\nmemory\t143771 MiB\ndriver\t580.1\nnvcc\t13.0\n"
          "torch\t2.11.0\ntransformers\t5.17.0\ncommit\tabc1234\ndate\t2026-12-03 04:00 UTC\nmode\tgpu\nbudget_s\t480\n")
    steps = [
        ("build", "pass", 60, 240, "-", "45 sources"),
        ("copybw", "pass", 5, 30, "copybw.json", "copy bandwidth: 4200 GB/s"),
        ("ops", "fail", 40, 120, "-", "gpu_ops: 6 checks, 1 failed"),
        ("parity", "pass", 50, 120, "parity.json", "ok"),
        ("tput-1b-256", "pass", 30, 50, "bench_tput-1b-256.json", "4096 requests"),
        ("tput-1b-1024", "pass", 30, 50, "bench_tput-1b-1024.json", "4096 requests"),
        ("tput-smol-256", "pass", 20, 40, "bench_tput-smol-256.json", "4096 requests"),
        ("tput-smol-1024", "pass", 20, 40, "bench_tput-smol-1024.json", "4096 requests"),
        ("b1-1b-bf16", "pass", 8, 30, "bench_b1-1b-bf16.json", "1 request"),
        ("b1-smol-bf16", "pass", 8, 30, "bench_b1-smol-bf16.json", "1 request"),
        ("b1-1b-q4_0", "pass", 8, 30, "bench_b1-1b-q4_0.json", "1 request, --gpu-weights native"),
        ("b1-1b-q8_0", "pass", 8, 30, "bench_b1-1b-q8_0.json", "1 request, --gpu-weights native"),
        ("b1-7b-q4_k", "pass", 40, 90, "bench_b1-7b-q4_k.json", "1 request, --gpu-weights native"),
    ]
    write(d, "steps.tsv", "".join("\t".join(str(x) for x in r) + "\n" for r in steps))
    write(d, "models.tsv", "llama1b-q4_0\t700000000\nllama7b-q4_k\t3800000000\nbroken line\n")
    write(d, "copybw.json", json.dumps({"gbs": 4000.0, "method": "torch"}))
    write(d, "ops.json", json.dumps({"copy_gbs": 0, "results": [
        {"op": "matmul", "case": "a", "status": "PASS", "err": 1e-3, "tol": 1.5e-2},
        {"op": "matmul", "case": "b", "status": "FAIL", "err": 3e-2, "tol": 1.5e-2},
        {"op": "attention", "case": "c", "status": "UNSUPPORTED", "err": 0, "tol": 1e-2},
        {"op": "rmsnorm", "case": "d", "status": "PASS", "err": 1e-6, "tol": 1e-5},
        {"op": "rmsnorm", "case": "e", "status": "PASS", "err": 0, "tol": 1e-5},
        {"op": "roofline", "case": "copy", "status": "BENCH", "err": 0, "tol": 0}]}))
    write(d, "parity.json", json.dumps({"model": "/x/llama1b.gguf", "backend": "cuda", "references": [
        {"name": "transformers-bf16", "pass": True, "prefill": {"rel_max": 0.012, "agree": 0.97},
         "decode": {"rel_max": 0.014, "agree": 0.96}}], "pass": True}))
    write(d, "bench_tput-1b-256.json", bench(35000.0, 7.2))
    write(d, "smi_tput-1b-256.csv", "90\n94\n[N/A]\n")
    write(d, "bench_tput-1b-1024.json", bench(48000.0, 20.0))
    write(d, "bench_tput-smol-256.json", bench(45000.0, 5.5))
    write(d, "bench_tput-smol-1024.json", bench(99000.0, 15.0))
    write(d, "bench_b1-1b-bf16.json", bench(600.0, 0.75))
    write(d, "bench_b1-smol-bf16.json", bench(600.0, 0.5))
    write(d, "bench_b1-1b-q4_0.json", bench(600.0, 0.39))
    write(d, "bench_b1-1b-q8_0.json", bench(600.0, 0.6))
    write(d, "bench_b1-7b-q4_k.json", bench(300.0, 1.9))
    r = subprocess.run([sys.executable, os.path.join(HERE, "gpu_check_summary.py"), d], capture_output=True, text=True)
    check(r.returncode == 0, f"summary exit {r.returncode}: {r.stderr[-400:]}")
    with open(os.path.join(d, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(d, "summary.md")) as f:
        md = f.read()
    check(md == r.stdout.rstrip("\n") or md.rstrip("\n") == r.stdout.rstrip("\n"), "summary.md is what was printed")
    check(s["card"] == "NVIDIA H200" and s["commit"] == "abc1234" and s["sm"] == "90", "card, commit, sm")
    check(fig(s, "copy_gbs")["value"] == 4000.0, "copy bandwidth from copybw.json")
    check(fig(s, "tput-1b-256")["status"] == "missed" and fig(s, "tput-1b-1024")["status"] == "met",
          "Llama-1B throughput goal 45,000: 35,000 missed, 48,000 met")
    check(fig(s, "tput-smol-1024")["status"] == "missed" and fig(s, "tput-smol-1024")["value"] == 99000.0,
          "SmolLM2 goal 100,000: 99,000 missed")
    check(fig(s, "tput-1b-1024")["graph_replays"] == 900, "bench extras kept")
    check(fig(s, "tput-1b-256")["gpu_utilisation_pct"] == 92.0, "nvidia-smi samples averaged, junk lines left out")
    check(fig(s, "b1-1b-bf16")["status"] == "met" and fig(s, "b1-smol-bf16")["status"] == "missed",
          "batch 1: 0.75 <= 0.8 met, SmolLM2 0.5 > 0.4 missed")
    check(fig(s, "b1-1b-q4_0")["status"] == "met" and fig(s, "b1-1b-q8_0")["status"] == "no goal", "Q4_0 / Q8_0")
    frac = fig(s, "b1-7b-q4_k-fraction")
    want = 3.8e9 / 1.9e-3 / 4000e9
    check(frac["value"] is not None and abs(frac["value"] - want) < 1e-9 and frac["status"] == "met",
          f"7B Q4_K fraction {frac['value']} (want {want:.4f}, met)")
    check(fig(s, "parity_rel_max")["value"] == 0.014 and fig(s, "parity_agree")["value"] == 0.96,
          "parity: worst of prefill and decode")
    check(fig(s, "parity_rel_max")["status"] == "met" and fig(s, "parity_agree")["status"] == "met", "parity goals")
    ops = s["ops"]
    check(ops["matmul"] == {"checks": 2, "pass": 1, "fail": 1, "unsupported": 0, "worst": 2.0}, f"matmul row {ops.get('matmul')}")
    check(ops["attention"]["unsupported"] == 1 and "roofline" not in ops, "unsupported counted, BENCH rows left out")
    check(fig(s, "ops_failed")["value"] == 2.0 and fig(s, "ops_failed")["status"] == "missed",
          "a failed and an unsupported op miss the ops goal (the table comes from ops.json though the step failed)")
    check(s["counts"]["fail"] == 1 and s["counts"]["pass"] == 12, f"step counts {s['counts']}")
    for needle in ("| offline throughput, Llama-1B shape, 1024 seqs / 8192 tokens | 48,000 tok/s (TPOT p50 20 ms, 250 seqs/step) "
                   "| >= 45,000 tok/s | met |",
                   "| offline throughput, Llama-1B shape, 256 seqs / 2048 tokens | 35,000 tok/s (TPOT p50 7.2 ms, 250 seqs/step, "
                   "GPU util. 92 %) | >= 45,000 tok/s | missed |",
                   "| batch 1, 7B shape, Q4_K weights (native): weight stream / copy bandwidth | 50.0 % | >= 50 % | met |",
                   "| matmul | 2 | 1 | 1 | 0 | 2.00 |", "### gpu-check: NVIDIA H200, 2026-12-03 04:00 UTC, commit abc1234",
                   "| ops | fail | 40 / 120 |"):
        check(needle in md, f"table line {needle!r}")


def test_broken_run(d):
    write(d, "steps.tsv", "build\tpass\t60\t240\t-\tok\n"
          "copybw\tskip\t0\t30\t-\tno python3 with torch\n"
          "ops\tpass\t40\t120\tops.json\tok\n"
          "parity\tpass\t10\t120\tparity.json\tok\n"
          "tput-1b-256\ttimeout\t50\t50\t-\tstopped at its time limit (50 s)\n"
          "b1-1b-q4_0\tunsupported\t0\t30\t-\tnot supported by this build: no gpu_weights\n"
          "b1-7b-q4_k\tpass\t40\t90\tbench_b1-7b-q4_k.json\tweights as bf16 (native: not supported); 1 request\n"
          "bad line without enough fields\n")
    write(d, "ops.json", "{not json")
    write(d, "parity.json", json.dumps({"references": "nope"}))
    write(d, "bench_b1-7b-q4_k.json", bench(300.0, 5.0))
    s = gcs.gpu_check_summary_build(d)
    md = gcs.gpu_check_summary_markdown(s)
    check(s["card"] is None and "no GPU" in md, "no card: 'no GPU' in the heading")
    check(fig(s, "tput-1b-256")["status"] == "not measured" and "timeout" in fig(s, "tput-1b-256")["why"],
          "a timed-out step: not measured, says timeout")
    check("not supported by this build" in fig(s, "b1-1b-q4_0")["why"], "unsupported reason kept")
    check(fig(s, "tput-smol-256")["why"] == "step not run", "a step that never ran")
    check(fig(s, "ops_failed")["value"] is None and fig(s, "parity_rel_max")["value"] is None, "broken JSON files")
    b7 = fig(s, "b1-7b-q4_k")
    check(b7["weights"] == "bf16" and b7["bytes_per_token"] == 2.0 * gcs.PARAMS["llama7b"], "7B run with bf16 weights")
    frac = fig(s, "b1-7b-q4_k-fraction")
    check(frac["value"] is None and frac["status"] == "no goal" and "no python3 with torch" in frac["why"],
          "no copy bandwidth: the fraction is not measured, and a bf16 run has no goal")
    check(s["counts"] == {"pass": 4, "fail": 0, "skip": 1, "timeout": 1, "unsupported": 1}, f"counts {s['counts']}")


def test_quant_models(d):
    try:
        import gguf
        import numpy as np
    except ImportError:
        print("skip: no gguf/numpy for the quantized-model check")
        return
    r = subprocess.run([sys.executable, os.path.join(HERE, "write_models.py"), d, "--models",
                        "tiny-q4_0,tiny-q8_0,tiny-q4_k"], capture_output=True, text=True)
    check(r.returncode == 0, f"write_models.py: {r.stderr[-300:]}")
    for q, tname in (("q4_0", "Q4_0"), ("q8_0", "Q8_0"), ("q4_k", "Q4_K")):
        rd = gguf.GGUFReader(os.path.join(d, f"tiny-{q}.gguf"))
        mats = [t for t in rd.tensors if len(t.shape) == 2]
        check(len(mats) == 1 + 2 * 7, f"{q}: 15 matrices")
        for t in mats:
            x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            rms = float(np.sqrt((x * x).mean()))
            fan_in = 64 if t.name == "token_embd.weight" else x.shape[-1]
            gain = 1.0 if t.name == "token_embd.weight" else (3.0 / 2 ** 0.5 if t.name.endswith(
                ("attn_output.weight", "ffn_down.weight")) else 1.5)
            want = 0.4 * gain / fan_in ** 0.5
            check(t.tensor_type.name == tname, f"{q} {t.name}: type {t.tensor_type.name}")
            check(bool(np.isfinite(x).all()) and 0.7 * want < rms < 1.4 * want,
                  f"{q} {t.name}: rms {rms:.4g}, want about {want:.4g}")
    r = subprocess.run([sys.executable, os.path.join(HERE, "write_models.py"), d, "--models", "smol-q4_k"],
                       capture_output=True, text=True)
    check(r.returncode != 0 and "256-value blocks" in r.stderr, "Q4_K refuses rows that are not whole blocks (576)")
    r = subprocess.run([sys.executable, os.path.join(HERE, "write_models.py"), d, "--models", "llama7b"],
                       capture_output=True, text=True)
    check(r.returncode == 2, "llama7b is quantized only")


def main():
    for t in (test_full_run, test_broken_run, test_quant_models):
        with tempfile.TemporaryDirectory() as d:
            t(d)
    print(f"test_gpu_check_summary: {'FAIL' if FAILS else 'PASS'} ({len(FAILS)} failed)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
