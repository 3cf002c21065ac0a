"""`just bench`: every case, grokscope and its reference back to back on this machine with the same
thread count; prints a table and appends it, with date, commit and machine, to bench/RESULTS.md.

Usage: python bench/run.py [--threads N] [--quick]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "grokscope")
PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(args, **kw):
    """Runs a command; returns (seconds, stdout). Fails loudly with the command's stderr."""
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, cwd=kw.get("cwd", ROOT))
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return dt, p.stdout


def gs(threads, *args):
    return sh([BIN, "--device", "cpu", "--threads", str(threads), *args])


def ref(threads, script, *args):
    dt, out = sh([PY, os.path.join(HERE, script), "--threads", str(threads), *args])
    return dt, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def inner_seconds(out, pattern):
    """The compute seconds a grokscope command reports (loading and process start excluded)."""
    m = re.search(pattern, out)
    if m is None:
        sys.exit(f"bench: no timing matching {pattern!r} in:\n{out}")
    return float(m.group(1))


def train_case(threads, preset, steps, work, repeats, extra=()):
    """grokscope steps/s (from its own timer, evaluation excluded) and the eager reference's,
    measured `repeats` times alternately (a fresh run each time). Returns the medians of each side,
    the paired ratios (their median is robust to the machine's speed drifting between pairs; the
    table shows it with their range), the FLOPs of one step and the last run's folder."""
    ours, theirs, ratios = [], [], []
    for i in range(repeats):
        run = os.path.join(work, f"run-{preset}-{i}")
        sets = [f"steps={steps}", f"eval_every={steps}", f"checkpoints=steps:{steps}", *extra]
        _, out = gs(threads, "train", "--preset", preset, "--out", run, "--quiet",
                    *sum((["--set", s] for s in sets), []))
        m = re.search(r"([0-9.]+) (steps/s|s/step) in training steps", out)
        if m is None:
            sys.exit(f"bench: no training speed in the output of grokscope train:\n{out}")
        ours.append(float(m.group(1)) if m.group(2) == "steps/s" else 1.0 / float(m.group(1)))
        cfg = json.load(open(os.path.join(run, "config.json")))
        sched = cfg["schedule"]
        schedule = sched if isinstance(sched, list) else list(range(cfg["n_layer"]))
        args = ["--data", cfg["data_dir"], "--steps", str(max(3, steps // 2)), "--warmup", "2",
                "--batch", str(cfg["batch_size"]), "--d-model", str(cfg["d_model"]),
                "--n-head", str(cfg["n_head"]), "--d-mlp", str(cfg["d_mlp"]),
                "--schedule", ",".join(str(s) for s in schedule), "--dropout", str(cfg["dropout"])]
        _, res = ref(threads, "train_ref.py", *args)
        theirs.append(res[-1]["steps_per_s"])
        ratios.append(ours[-1] / theirs[-1])
    params, seq = res[-1]["params"], res[-1]["seq_len"]
    flops_per_step = 6 * params * cfg["batch_size"] * seq
    return statistics.median(ours), statistics.median(theirs), ratios, flops_per_step, run


def matmul_limit(threads):
    _, res = ref(threads, "matmul.py")
    return res[-1]["gflops"] * 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--quick", action="store_true", help="fewer steps and examples")
    args = ap.parse_args()
    t = args.threads
    rows = []

    def add(*row):
        rows.append(row)
        print("  " + " | ".join(row), flush=True)

    work = tempfile.mkdtemp(prefix="grokscope-bench-")
    try:
        # The limit: the best of three measurements spread over the run (the machine's speed drifts).
        limits = [matmul_limit(t)]

        # Data generation at the paper's full size.
        dt_ours, _ = gs(t, "data", "composition", "--entities", "2000", "--relations", "200", "--out-degree", "20",
                        "--phi", "18", "--seed", "0", "--out", os.path.join(work, "paper-data"))
        _, res = ref(t, "gen_ref.py")
        dt_ref = res[-1]["seconds"]
        add(*("data: paper composition φ=18 (724k)", f"{dt_ours:.1f} s", f"{dt_ref:.1f} s", f"{dt_ref / dt_ours:.1f}×", ""))

        # Training throughput: medians of alternating repeats.
        steps = 60 if args.quick else 120
        repeats = 1 if args.quick else 5
        runs, train_rows = {}, []
        for preset in ["tiny-composition", "tiny-comparison"]:
            ours, theirs, ratios, fl, run = train_case(t, preset, steps, work, repeats)
            runs[preset] = run
            train_rows.append((f"train {preset} (steps/s)", ours, theirs, ratios, fl, 1))
            limits.append(matmul_limit(t))
        ours, theirs, ratios, fl, _ = train_case(t, "paper-composition", 3, work, 1)
        train_rows.append(("train paper-composition 8L×768 (steps/s)", ours, theirs, ratios, fl, 3))
        limits.append(matmul_limit(t))
        limit = max(limits)
        add(*("fp32 matmul 1024² (the limit: best of 3)", f"{limit / 1e9:.0f} GFLOP/s",
              f"(measured {', '.join(f'{x / 1e9:.0f}' for x in limits)})", "", ""))
        for name, ours, theirs, ratios, fl, digits in train_rows:
            spread = f" ({min(ratios):.2f}–{max(ratios):.2f}, {len(ratios)} pairs)" if len(ratios) > 1 else ""
            add(*(name, f"{ours:.{digits}f}", f"{theirs:.{digits}f}",
                  f"{statistics.median(ratios):.2f}×{spread}", f"{100 * ours * fl / limit:.0f}%"))

        # Causal tracing and lens on the tiny composition checkpoint (same prompt sample, same checkpoint).
        run = runs["tiny-composition"]
        ckpt = os.path.join(run, f"step-{steps}", "model.safetensors")
        size = "60" if args.quick else "300"
        patch_dir = os.path.join(work, "patch")
        # The paper's cells: noising, the corrupted role's own position, layers 1..L-1.
        dt_paper_cli, out = gs(t, "patch", "--checkpoint", ckpt, "--out", patch_dir, "--size", size,
                               "--direction", "noising", "--positions", "corrupted")
        dt_paper_ours = inner_seconds(out, r"cells in ([0-9.]+) s")
        # TransformerLens get_act_patch_resid_pre cells: denoising, every (layer, position).
        dt_tl_cli, out = gs(t, "patch", "--checkpoint", ckpt, "--out", os.path.join(work, "patch-tl"), "--size", size,
                            "--direction", "denoising", "--positions", "each")
        dt_tl_ours = inner_seconds(out, r"cells in ([0-9.]+) s")
        hf = os.path.join(work, "hf")
        gs(t, "export-hf", "--checkpoint", ckpt, "--out", hf)
        _, res = ref(t, "trace_ref.py", "--hf-dir", hf, "--examples", os.path.join(patch_dir, "examples.jsonl"),
                     "--which", "paper,tl")
        by = {r["case"]: r["seconds"] for r in res}
        add(*(f"causal tracing, tiny, {size} ex: paper's loop (s/ckpt)",
              f"{dt_paper_ours:.3f} s (CLI {dt_paper_cli:.2f} s)", f"{by['paper']:.1f} s",
              f"{by['paper'] / dt_paper_ours:.0f}× (CLI {by['paper'] / dt_paper_cli:.0f}×)", ""))
        add(*(f"causal tracing, tiny, {size} ex: TransformerLens sweep (s/ckpt)",
              f"{dt_tl_ours:.3f} s (CLI {dt_tl_cli:.2f} s)", f"{by['tl']:.2f} s",
              f"{by['tl'] / dt_tl_ours:.1f}× (CLI {by['tl'] / dt_tl_cli:.1f}×)", ""))
        dt_lens_cli, out = gs(t, "lens", "--checkpoint", ckpt, "--out", os.path.join(work, "lens"), "--size", size)
        dt_ours = inner_seconds(out, r"\(in ([0-9.]+) s\)")
        _, res = ref(t, "trace_ref.py", "--hf-dir", hf, "--examples", os.path.join(patch_dir, "examples.jsonl"),
                     "--which", "lens")
        add(*(f"logit lens, tiny, {size} ex (s/ckpt)", f"{dt_ours:.3f} s (CLI {dt_lens_cli:.2f} s)",
              f"{res[-1]['seconds']:.3f} s", f"{res[-1]['seconds'] / dt_ours:.1f}× (CLI {res[-1]['seconds'] / dt_lens_cli:.1f}×)", ""))
        # Edge attribution over every edge against exact patching of each edge, same graph and prompt sample.
        circuit_dir = os.path.join(work, "circuit")
        _, out = gs(t, "circuit", "--checkpoint", ckpt, "--out", circuit_dir, "--size", size)
        edges = re.search(r"([0-9]+) edges scored", out).group(1)
        dt_eap = inner_seconds(out, r"scored by eap in ([0-9.]+) s")
        dt_exact = inner_seconds(out, r"exact edge patching in ([0-9.]+) s")
        add(*(f"edge attribution (EAP), tiny, {size} ex, {edges} edges (s/ckpt)", f"{dt_eap:.3f} s",
              f"exact edge patching {dt_exact:.1f} s", f"{dt_exact / dt_eap:.0f}×", ""))
        _, out = gs(t, "circuit", "--checkpoint", ckpt, "--out", circuit_dir + "-ig", "--size", size,
                    "--method", "eap-ig:5", "--no-exact")
        dt_ig = inner_seconds(out, r"scored by eap-ig:5 in ([0-9.]+) s")
        add(*(f"edge attribution (EAP-IG, 5 steps), tiny, {size} ex (s/ckpt)", f"{dt_ig:.3f} s",
              f"exact edge patching {dt_exact:.1f} s", f"{dt_exact / dt_ig:.0f}×", ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    header = ("case", "grokscope", "reference", "ratio", "% of limit")
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    stamp = f"## {datetime.datetime.now():%Y-%m-%d %H:%M} · commit {commit} · {cpu}, {os.cpu_count()} cores, {t} threads"
    text = stamp + "\n\n" + "\n".join(table) + "\n"
    print(text)
    with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
