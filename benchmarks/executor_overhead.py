"""Executor overhead and packing, on the embedded tiny model (CPU). Prints figures; not a test.

    .venv/bin/python benchmarks/executor_overhead.py [--rows 1600] [--repeats 2]

1. tokens/s of `sftplan run` (real planner, single process) against a minimal plain Trainer script on
   the same model, data, batch and learning rate. Both count non-padding tokens over the training loop:
   `sftplan run` from metrics.jsonl (sum of step times: golden scoring and checkpoint writes, which
   the plain script does not do, are left out), the plain script from Trainer's train_runtime.
   Target: ratio >= 0.95. Wall time of the whole command is printed too.
2. packing against padding on the same variable-length data (both through `sftplan run`): real tokens
   per second and training-loop time per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN = r'''
import json, sys, time
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
from executor.data import build_train_data
from executor.rows import read_rows
cfg = json.loads(sys.argv[1])
tok = AutoTokenizer.from_pretrained(cfg["model"])
data, collator, enc = build_train_data(tok, read_rows(cfg["train"]), max_seq_len=cfg["max_seq_len"], packing=False)
model = AutoModelForCausalLM.from_pretrained(cfg["model"])
model.config.use_cache = False
args = TrainingArguments(output_dir=cfg["out"], per_device_train_batch_size=cfg["mb"], gradient_accumulation_steps=cfg["ga"],
                         learning_rate=cfg["lr"], num_train_epochs=cfg["epochs"], lr_scheduler_type="cosine",
                         save_strategy="no", report_to="none", logging_steps=1000, disable_tqdm=True, use_cpu=True,
                         remove_unused_columns=False, dataloader_pin_memory=False, seed=42, data_seed=42)
t0 = time.time()
res = Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
print(json.dumps({"tokens": collator.tokens_seen, "train_s": res.metrics["train_runtime"]}))
'''


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True, **kw)


def plan(work: Path, assets: dict, *, packing: bool, name: str) -> Path:
    path = work / f"{name}.yaml"
    sh([sys.executable, "-m", "advisor", "plan", "--model", str(assets["model"]), "--dataset", str(assets["train"]),
        "--golden", str(assets["golden"]), "--method", "full-sft", "--gpu", "a100-80gb", "--num-gpus", "1",
        "--strategy", "single", "--learning-rate", "3e-3", "--epochs", "2", "--max-seq-len", "128",
        *(["--packing"] if packing else []), "-o", str(path)])
    sh([sys.executable, "-m", "advisor", "approve", str(path), "--by", "bench"])
    return path


def sftplan_run(plan_path: Path, run_dir: Path) -> dict:
    t0 = time.time()
    sh([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir), "--allow-mismatch"])
    wall = time.time() - t0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    loop_s = sum(r["step_time_s"] for r in rows)
    tokens = sum(r["tokens_per_s_per_gpu"] * r["step_time_s"] for r in rows)
    return {"tokens": tokens, "train_s": loop_s, "tps": tokens / loop_s, "wall_s": wall, "steps": len(rows)}


def plain_run(plan_path: Path, assets: dict, out: Path) -> dict:
    from advisor.planfile import read_plan

    p = read_plan(plan_path)
    cfg = {"model": str(assets["model"]), "train": str(assets["train"]), "max_seq_len": p.hyperparameters.max_seq_len,
           "mb": p.recommended.micro_batch_size, "ga": p.recommended.grad_accum, "lr": p.hyperparameters.learning_rate,
           "epochs": p.hyperparameters.epochs, "out": str(out)}
    t0 = time.time()
    res = json.loads(sh([sys.executable, "-c", PLAIN, json.dumps(cfg)]).stdout.strip().splitlines()[-1])
    res["wall_s"] = time.time() - t0
    res["tps"] = res["tokens"] / res["train_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1600)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    from executor.tiny import make_tiny

    with tempfile.TemporaryDirectory(prefix="sftplan-bench-") as tmp:
        work = Path(tmp)
        assets = make_tiny(work / "tiny", n_train=a.rows, n_golden=8)
        padded, packed = plan(work, assets, packing=False, name="padded"), plan(work, assets, packing=True, name="packed")
        ours, plain, pack = [], [], []
        for i in range(a.repeats):  # interleaved, best of: the CPU is shared
            ours.append(sftplan_run(padded, work / f"run-pad-{i}"))
            plain.append(plain_run(padded, assets, work / f"plain-{i}"))
            pack.append(sftplan_run(packed, work / f"run-pack-{i}"))
        best = lambda runs: max(runs, key=lambda r: r["tps"])  # noqa: E731
        o, p, k = best(ours), best(plain), best(pack)
        from advisor.planfile import read_plan

        rec = read_plan(padded).recommended
        print(f"tiny Llama, {a.rows} variable-length rows, 2 epochs, micro-batch {rec.micro_batch_size} x "
              f"accum {rec.grad_accum}, CPU, best of {a.repeats}")
        print(f"sftplan run   : {o['tps']:9,.0f} tokens/s  (training loop {o['train_s']:.2f} s, whole command "
              f"{o['wall_s']:.1f} s)")
        print(f"plain Trainer : {p['tps']:9,.0f} tokens/s  (training loop {p['train_s']:.2f} s, whole script "
              f"{p['wall_s']:.1f} s)")
        print(f"ratio sftplan/plain = {o['tps'] / p['tps']:.3f}  (target >= 0.95)")
        print(f"packing       : {k['tps']:9,.0f} tokens/s, {k['train_s'] / 2:.2f} s per epoch, {k['steps']} steps")
        print(f"padding       : {o['tps']:9,.0f} tokens/s, {o['train_s'] / 2:.2f} s per epoch, {o['steps']} steps")
        print(f"packing speed-up = {k['tps'] / o['tps']:.2f}x tokens/s, {o['train_s'] / k['train_s']:.2f}x epoch time")


if __name__ == "__main__":
    main()
