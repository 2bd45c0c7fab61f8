"""The calibration loop on this machine: run the tiny model at two shapes, calibrate, plan a run of a third
shape raw and calibrated, run it, and print each estimate's error against what it measured.

    .venv/bin/python benchmarks/calibration_loop.py [--out DIR]

Runs (all planned for the `cpu` tier, this host; approved and run with `sftplan run`, as a user would; the
planner picks micro-batch and accumulation for each):
- A: the tiny data's short rows (~25 tokens), max_seq_len 64, 600 rows: a step is mostly fixed overhead;
- B: rows of 8 tasks each (~200 tokens), max_seq_len 256, 600 rows: a step is mostly compute;
- C: rows of 3 tasks (~75 tokens), max_seq_len 128, 1200 rows: the run to predict.
`sftplan calibrate A B` fits the step's fixed overhead and its compute apart (two shapes: "fixed+rate");
`sftplan calibrate A` alone gives one factor (one shape), shown beside it.
Target (issue 15): C's calibrated (A + B) tokens/s error is smaller than the raw one and within 15%.

Measured figure: this host's cores are shared with other jobs, which slow a run's median step by 2-10x
at random; the estimator (and so the calibration, see advisor/calibration.py) models the host
uncontended. The runs train on one thread (OMP_NUM_THREADS=1), so report.json's ``measured_uncontended``
is read from the fastest tenth of the steps by process CPU time, which the neighbours stretch least (they still
leave cold caches: a run at a bad moment reads up to 50% slow; repeat it when the runs' figures look
odd). The wall-clock median is printed beside it, and the load average during each run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# One intra-op thread: on a host shared with other jobs two threads stall on each other at every operator
# (measured on this 2-core box at load average 5: 5-17x slower than one), and a single-threaded process's
# CPU time per step is its uncontended step time (executor/report.py's measured_uncontended).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def sftplan(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "advisor", *args], cwd=ROOT, capture_output=True, text=True, env=ENV)
    if proc.returncode != 0:
        sys.exit(f"sftplan {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def long_rows(path: Path, n: int, tasks_per_row: int, seed: int) -> Path:
    """Rows of ``tasks_per_row`` of the tiny data's tasks each (longer sequences, the same vocabulary)."""
    from executor.tiny import make_rows

    rng = random.Random(seed)
    pairs = make_rows(n * tasks_per_row, seed)
    rows = []
    for i in range(n):
        chunk = pairs[i * tasks_per_row:(i + 1) * tasks_per_row]
        rng.shuffle(chunk)
        rows.append({"prompt": "; ".join(p for p, _ in chunk), "response": "; ".join(a for _, a in chunk)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def plan(out: Path, assets: dict, train: Path, max_seq_len: int, name: str, calibration: Path | None = None) -> dict:
    path = out / f"{name}.yaml"
    extra = ["--calibration", str(calibration)] if calibration else []
    sftplan("plan", "--model", str(assets["model"]), "--dataset", str(train), "--golden", str(assets["golden"]),
            "--method", "full-sft", "--gpu", "cpu", "--num-gpus", "1", "--strategy", "single", "--learning-rate", "3e-3",
            "--epochs", "2", "--max-seq-len", str(max_seq_len), *extra, "-o", str(path))
    import yaml

    return {"path": path, "plan": yaml.safe_load(path.read_text())}


def run(out: Path, p: dict, name: str) -> dict:
    sftplan("approve", str(p["path"]), "--by", "benchmark")
    run_dir = out / f"run-{name}"
    started, load0 = time.time(), os.getloadavg()[0]
    sftplan("run", str(p["path"]), "--out", str(run_dir))
    report = json.loads((run_dir / "report.json").read_text())
    tps = report["figures"]["tokens_per_s_per_gpu"]
    rec = p["plan"]["recommended"]
    print(f"   run {name}: micro-batch {rec['micro_batch_size']} x accum {rec['grad_accum']}, {time.time() - started:.0f} s, "
          f"tokens/s uncontended {tps.get('measured_uncontended', 0):,.0f} (median {tps['measured']:,.0f}); "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    return {"dir": run_dir, "report": report}


def calibrate(out: Path, name: str, *runs: dict) -> Path:
    cal = out / f"{name}.yaml"
    text = sftplan("calibrate", *(str(r["dir"]) for r in runs), "-o", str(cal)).stdout.strip()
    print("   " + text.replace("\n", "\n   "))
    return cal


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="working folder (default: a temporary one)")
    args = p.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="sftplan-calibration-"))
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from executor.tiny import make_tiny

    assets = make_tiny(out / "tiny", n_train=600, n_golden=8)
    data = {"a": (assets["train"], 64), "b": (long_rows(out / "train-b.jsonl", 600, 8, 1), 256),
            "c": (long_rows(out / "train-c.jsonl", 1200, 3, 2), 128)}
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("1. runs A (short rows, seq 64) and B (long rows, seq 256), planned raw for the cpu tier")
    run_a = run(out, plan(out, assets, *data["a"], "plan-a"), "a")
    run_b = run(out, plan(out, assets, *data["b"], "plan-b"), "b")
    print("2. calibrate from A and B (two shapes), and from A alone (one shape)")
    cal_ab = calibrate(out, "calibration-ab", run_a, run_b)
    cal_a = calibrate(out, "calibration-a", run_a)
    print("3. run C (3-task rows, seq 128): planned raw and calibrated, run as planned raw")
    c_raw = plan(out, assets, *data["c"], "plan-c")
    c_ab = plan(out, assets, *data["c"], "plan-c-ab", calibration=cal_ab)
    c_a = plan(out, assets, *data["c"], "plan-c-a", calibration=cal_a)
    run_c = run(out, c_raw, "c")
    tps = run_c["report"]["figures"]["tokens_per_s_per_gpu"]
    measured, median = tps.get("measured_uncontended") or tps["measured"], tps["measured"]

    def err(x: float, m: float) -> float:
        return abs(x - m) / m

    raw = c_raw["plan"]["estimate"]["tokens_per_s_per_gpu"]
    fit = c_ab["plan"]["estimate"]["tokens_per_s_per_gpu"]
    one = c_a["plan"]["estimate"]["tokens_per_s_per_gpu"]
    print(f"\ntokens/s per GPU, run C: measured {measured:,.0f} uncontended (median {median:,.0f})")
    for label, x in (("raw estimate", raw), ("calibrated from A + B (fixed+rate)", fit), ("calibrated from A alone (factor)", one)):
        print(f"   {label:36} {x:>10,.0f}  error {err(x, measured):5.0%} (against the median {err(x, median):.0%})")
    ok = err(fit, measured) < err(raw, measured) and err(fit, measured) <= 0.15
    print(f"target (calibrated error smaller than raw and <= 15%, uncontended): {'met' if ok else 'NOT met'}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
