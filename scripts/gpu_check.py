"""The GPU check (`just gpu-check`, scripts/gpu-check.sh): proves the carried release binary on a
lent CUDA machine and writes one markdown table.

Rows: doctor on the device; the paper-composition shape's training speed in fp32 and bf16 beside
bench/train_ref.py (eager PyTorch) on the same device in the same run, with the projected hours to
300k steps; lens and patch of one checkpoint on the device against the CPU; a checkpoint trained on
the device evaluated on the CPU; tiny-composition trained on the device for its preset's steps, with
its grokking milestones beside the CPU run's (README).

`--dry-run` runs every row on the CPU at toy sizes, so the plumbing (commands, parsing, the table)
is tested on a machine without a GPU; its numbers mean nothing.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CPU run of tiny-composition (README "Results"): train >= 0.9 at step 1300, test ID >= 0.9 at 2400.
CPU_MILESTONES = {"train": 1300, "test_id": 2400}
PAPER_STEPS = 300_000
PAPER_TIME = "the paper's runs (curves to 3-4e5 steps, OOD checked to 2M) took <= 96 h each on an A6000/A100 (App. A)"


class Check:
    """Runs commands, logs them under OUT/logs, and collects the table's rows."""

    def __init__(self, args):
        self.args = args
        self.device = "cpu" if args.dry_run else "cuda"
        self.report = os.path.abspath(args.out)
        self.work = os.path.abspath(args.work or args.out)
        self.bin = os.path.abspath(args.bin)
        self.rows = []
        self.failed = False
        os.makedirs(os.path.join(self.report, "logs"), exist_ok=True)

    def run(self, name, cmd, env=None):
        """Runs `cmd`, saves its output to logs/NAME.log, returns stdout (raises on failure)."""
        started = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
        with open(os.path.join(self.report, "logs", name + ".log"), "w") as log:
            log.write("$ " + " ".join(cmd) + f"\n# {time.time() - started:.1f} s, exit {proc.returncode}\n")
            log.write(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(f"{name}: exit {proc.returncode}: {tail[0]}")
        return proc.stdout

    def grokscope(self, name, *args, device=None):
        return self.run(name, [self.bin, "--device", device or self.device, *args])

    def row(self, check, result, ok):
        self.rows.append((check, result, "yes" if ok is True else "NO" if ok is False else ok))
        self.failed |= ok is False

    def section(self, name, fn):
        """Runs one section; a failure becomes a row, and the other sections still run."""
        started = time.time()
        try:
            fn()
        except Exception as err:  # one failed section must not hide the others' rows
            self.row(name, f"failed: {err}", False)
        print(f"gpu-check: {name} done in {time.time() - started:.0f} s", file=sys.stderr, flush=True)


def doctor(c):
    text = c.grokscope("doctor", "doctor")
    backend = re.search(r"^cuda backend (.*)$", text, re.M)
    gpus = re.findall(r"^  gpu \d+\s+(.*)$", text, re.M)
    bf16 = "bf16 matmul  ok" in text
    loaded = bool(backend) and backend.group(1).startswith("loaded")
    cpu_only = bool(backend) and "CPU-only" in backend.group(1)
    c.row("CUDA backend", backend.group(1) if backend else "missing from doctor", "info" if c.args.dry_run and cpu_only else loaded)
    if not c.args.dry_run:
        c.row("GPU", "; ".join(gpus) or "none listed", bool(gpus))
        c.row("bf16 matmul on the GPU", "ok" if bf16 else "failed", bf16)


def paper_sets(c):
    """--set overrides for the paper-shape speed runs (toy shape in a dry run)."""
    sets = ["eval_every=100000000", "log_every=100", f"steps={c.args.paper_steps}", f"checkpoints=steps:{c.args.paper_steps}"]
    if c.args.dry_run:
        sets += ["n_layer=2", "d_model=64", "n_head=2", "d_mlp=256", "dataset.params.entities=200", "dataset.params.relations=20", "dataset.params.out_degree=10"]
    return sets


def train_speed(c, name, precision):
    """Steps/s of `grokscope train` (first step excluded, as it reports)."""
    args = ["train", "--preset", "paper-composition", "--data-root", os.path.join(c.work, "data"), "--out", os.path.join(c.work, name), "--quiet"]
    for s in paper_sets(c) + [f"precision={precision}"]:
        args += ["--set", s]
    text = c.grokscope(name, *args)
    m = re.search(r"([0-9.]+) (steps/s|s/step) in training steps", text)
    if not m:
        raise RuntimeError(f"{name}: no training speed in its output")
    value = float(m.group(1))
    return value if m.group(2) == "steps/s" else 1.0 / value


def reference_speed(c, precision):
    """Steps/s of bench/train_ref.py on the same device and shape."""
    config = json.load(open(os.path.join(c.work, "paper-fp32", "config.json")))
    data = config.get("data_dir") or find_dataset(os.path.join(c.work, "data"))
    cmd = [c.args.python, os.path.join(ROOT, "bench", "train_ref.py"), "--data", data, "--device", c.device,
           "--steps", str(c.args.paper_steps), "--warmup", "5", "--batch", str(config["batch_size"]),
           "--n-layer", str(config["n_layer"]), "--d-model", str(config["d_model"]), "--n-head", str(config["n_head"]),
           "--d-mlp", str(config["d_mlp"]), "--dropout", str(config["dropout"]), "--threads", str(os.cpu_count())]
    if precision == "bf16":
        cmd.append("--bf16")
    return json.loads(c.run(f"ref-{precision}", cmd).strip().splitlines()[-1])["steps_per_s"]


def find_dataset(root):
    for name in sorted(os.listdir(root)):
        if os.path.isfile(os.path.join(root, name, "train.json")):
            return os.path.join(root, name)
    raise RuntimeError(f"no dataset under {root}")


def paper_speed(c):
    precisions = ["fp32"] if c.args.dry_run else ["fp32", "bf16"]
    need = {"fp32": 1.0, "bf16": 1.3}
    for precision in precisions:
        ours = train_speed(c, f"paper-{precision}", precision)
        ref = reference_speed(c, precision)
        ratio = ours / ref
        hours = PAPER_STEPS / ours / 3600
        c.row(f"paper shape {precision}: steps/s (grokscope / eager PyTorch)",
              f"{ours:.2f} / {ref:.2f} = {ratio:.2f}x (target >= {need[precision]}x); 300k steps in {hours:.1f} h",
              "info" if c.args.dry_run else ratio >= need[precision])
    if c.args.dry_run:
        c.row("paper shape bf16", "skipped: bf16 needs CUDA", "n/a")
    else:
        c.row("paper's own time", PAPER_TIME, "info")


def tiny_run(c):
    """Trains tiny-composition on the device; returns its run folder."""
    run = os.path.join(c.work, "tiny")
    args = ["train", "--preset", "tiny-composition", "--data-root", os.path.join(c.work, "data"), "--out", run, "--quiet"]
    if c.args.dry_run:
        args += ["--set", "steps=60", "--set", "eval_every=30", "--set", "checkpoints=steps:30,60"]
    c.grokscope("tiny-train", *args)
    return run


def milestones(metrics_csv):
    """First step where train_inferred_acc >= 0.9, and where test_inferred_iid_acc >= 0.9."""
    first = {"train": None, "test_id": None}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            for key, col in [("train", "train_inferred_acc"), ("test_id", "test_inferred_iid_acc")]:
                if first[key] is None and row.get(col) not in (None, "") and float(row[col]) >= 0.9:
                    first[key] = int(row["step"])
    return first


def last_checkpoint(run):
    steps = sorted(int(d[5:]) for d in os.listdir(run) if re.fullmatch(r"step-\d+", d))
    return os.path.join(run, f"step-{steps[-1]}", "model.safetensors")


def tiny_checks(c):
    run = tiny_run(c)
    got = milestones(os.path.join(run, "metrics.csv"))
    step = lambda key: "not reached" if got[key] is None else f"step {got[key]}"
    text = (f"train>=0.9 at {step('train')} (CPU: step {CPU_MILESTONES['train']}), "
            f"test ID>=0.9 at {step('test_id')} (CPU: step {CPU_MILESTONES['test_id']})")
    c.row(f"tiny-composition on {c.device}: grokking milestones", text, "info" if c.args.dry_run else got["test_id"] is not None)
    ckpt = last_checkpoint(run)
    data = json.load(open(os.path.join(run, "config.json"))).get("data_dir") or find_dataset(os.path.join(c.work, "data"))
    eval_on_cpu(c, ckpt, data)
    compare_analyses(c, ckpt, data)


def accuracies(text):
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s+\d+\s+([0-9.]+)\s*$", text, re.M)}


def eval_on_cpu(c, ckpt, data):
    here = accuracies(c.grokscope("eval-device", "eval", "--checkpoint", ckpt, "--data", data))
    cpu = accuracies(c.grokscope("eval-cpu", "eval", "--checkpoint", ckpt, "--data", data, device="cpu"))
    same = bool(here) and here == cpu
    c.row(f"checkpoint trained on {c.device}, evaluated on cpu", "identical accuracy on every split" if same else f"{here} vs {cpu}", same)


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def compare_csv(a, b):
    """Largest absolute difference over the numeric cells of two CSVs with the same rows, and
    whether every rank column is identical."""
    rows_a, rows_b = read_rows(a), read_rows(b)
    if len(rows_a) != len(rows_b):
        raise RuntimeError(f"{os.path.basename(a)}: {len(rows_a)} rows against {len(rows_b)}")
    worst, ranks_same = 0.0, True
    for ra, rb in zip(rows_a, rows_b):
        for key, va in ra.items():
            vb = rb.get(key)
            try:
                fa, fb = float(va), float(vb)
            except (TypeError, ValueError):
                if va != vb:
                    raise RuntimeError(f"{os.path.basename(a)}: column {key} differs: {va!r} vs {vb!r}")
                continue
            if "rank" in key:
                ranks_same &= fa == fb
            elif fa == fa and fb == fb:
                worst = max(worst, abs(fa - fb))
    return worst, ranks_same


def compare_analyses(c, ckpt, data):
    for command, csv_name in [("lens", "lens.csv"), ("patch", "patch.csv")]:
        csvs = []
        for side, device in [("device", c.device), ("cpu", "cpu")]:
            out = os.path.join(c.work, f"{command}-on-{side}")
            c.grokscope(f"{command}-on-{side}", command, "--checkpoint", ckpt, "--data", data, "--out", out, device=device)
            csvs.append(os.path.join(out, csv_name))
        worst, ranks_same = compare_csv(*csvs)
        ok = worst <= 1e-4 and ranks_same
        c.row(f"{command} on {c.device} against cpu (fp32)", f"max abs diff {worst:.2e} (<= 1e-4), ranks {'identical' if ranks_same else 'DIFFER'}", ok)


def write_table(c):
    lines = ["| check | result | ok |", "|---|---|---|"] + [f"| {a} | {b} | {ok} |" for a, b, ok in c.rows]
    head = f"GPU check ({'DRY RUN on cpu: plumbing only, numbers meaningless' if c.args.dry_run else 'cuda'}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
    table = head + "\n".join(lines) + "\n"
    with open(os.path.join(c.report, "gpu-check.md"), "w") as f:
        f.write(table)
    print(table)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output folder (the table goes to OUT/gpu-check.md, logs to OUT/logs)")
    ap.add_argument("--work", help="folder for datasets, runs and analyses (default: OUT); keep it out of a folder that is copied back")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "grokscope"))
    ap.add_argument("--python", default=sys.executable, help="Python with torch for the eager reference")
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: tests the plumbing only")
    ap.add_argument("--paper-steps", type=int, default=None, help="timed steps per paper-shape run")
    args = ap.parse_args()
    if args.paper_steps is None:
        args.paper_steps = 3 if args.dry_run else 300
    c = Check(args)
    c.section("doctor", lambda: doctor(c))
    c.section("paper shape speed", lambda: paper_speed(c))
    c.section("tiny-composition", lambda: tiny_checks(c))
    write_table(c)
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()
