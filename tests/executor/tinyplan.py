"""Test helper: the embedded tiny model/data and an approved Plan built directly (no planner needed)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from advisor.models import (
    Checkpointing, DataFile, DatasetSpec, Evaluation, Hyperparameters, LoraAlternative, LoraSettings, ModelSummary, Plan, PlanEstimate,
    PlanRequest, Recommended,
)
from advisor.modelfiles import model_files
from advisor.planfile import approve, with_hash, write_plan

ROOT = Path(__file__).resolve().parents[2]
_CACHE: dict[tuple, Path] = {}


def tiny_assets(base: Path, *, n_train: int = 48, n_golden: int = 6) -> Path:
    """make_tiny once per (size) per test session, in a subprocess-free call; returns its folder."""
    key = (n_train, n_golden)
    if key not in _CACHE or not (_CACHE[key] / "model" / "config.json").is_file():
        from executor.tiny import make_tiny

        out = base / f"tiny-{n_train}-{n_golden}"
        make_tiny(out, n_train=n_train, n_golden=n_golden)
        _CACHE[key] = out
    return _CACHE[key]


def data_files_only(out: Path) -> Path:
    """One training row and one golden row: enough for code that hashes the data but never reads the model."""
    (out / "train.jsonl").write_text('{"prompt": "add 1 2", "response": "3"}\n')
    (out / "golden.jsonl").write_text('{"prompt": "add 2 2", "expected": "4"}\n')
    return out


def _file(path: Path) -> DataFile:
    rows = sum(1 for line in path.read_text().splitlines() if line.strip())
    return DataFile(path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), rows=rows)


def tiny_plan(assets: Path, *, strategy: str = "single", num_gpus: int = 1, epochs: int = 2,
              learning_rate: float = 3e-3, micro_batch_size: int = 4, grad_accum: int = 1, packing: bool = False,
              max_seq_len: int = 96, tolerance: float = 0.02, min_golden_score: float | None = None,
              method: str = "full-sft", lora: LoraSettings | None = None) -> Plan:
    data, golden = _file(assets / "train.jsonl"), _file(assets / "golden.jsonl")
    model = str(assets / "model")
    rec = Recommended(gpu="cpu", num_gpus=num_gpus, num_nodes=1, strategy=strategy, micro_batch_size=micro_batch_size,
                      grad_accum=grad_accum, activation_checkpointing=False)
    steps = -(-data.rows // (micro_batch_size * num_gpus * grad_accum))
    return with_hash(Plan(
        request=PlanRequest(model=model, model_path=model, golden=golden, packing=packing, method=method,
                            model_files=model_files(model, model),
                            dataset=DatasetSpec(examples=data.rows, avg_tokens=30, file=data)),
        model=ModelSummary(name="tiny", family="llama", source="config.json", params=120_000, active_params=120_000),
        method=method, findings=[], recommended=rec,
        estimate=PlanEstimate(memory_per_gpu_gib=0.01, memory_breakdown_gib={}, cpu_memory_per_node_gib=1.0,
                              hours=0.001, cost_usd=0.0, tokens_total=data.rows * 30 * epochs,
                              tokens_per_s_per_gpu=5000.0, step_time_s=0.05, mfu=0.01, steps_per_epoch=steps,
                              total_steps=steps * epochs),
        tiers=[],
        hyperparameters=Hyperparameters(learning_rate=learning_rate, warmup_ratio=0.1, weight_decay=0.0, epochs=epochs,
                                        max_seq_len=max_seq_len, global_batch_size=micro_batch_size * num_gpus * grad_accum,
                                        global_batch_tokens=max_seq_len * micro_batch_size * num_gpus * grad_accum),
        checkpointing=Checkpointing(keep_last=3, disk_gib_per_checkpoint=0.001, disk_gib=0.003),
        evaluation=Evaluation(golden=golden, tolerance=tolerance, min_golden_score=min_golden_score, max_new_tokens=8),
        lora_alternative=LoraAlternative(),
        lora=(lora or LoraSettings(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"])) if method == "lora" else None,
    ))


def approved_plan_file(tmp: Path, plan: Plan, name: str = "plan.yaml") -> Path:
    path = tmp / name
    write_plan(approve(plan, by="tester"), path)
    return path


def sftplan(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (the path a user takes)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "advisor", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def finished_epochs(run_dir: Path, weights: str = "model.safetensors") -> dict:
    """RUN_DIR/gate.json, every epoch's checkpoint asserted complete: its COMPLETE marker and its weights file."""
    gate = json.loads((run_dir / "gate.json").read_text())
    for epoch in gate["epochs"]:
        ckpt = run_dir / epoch["checkpoint"]
        assert (ckpt / "COMPLETE").is_file() and (ckpt / weights).is_file(), epoch
    return gate


def resume_after_losing_last_epoch(plan_path: Path, run_dir: Path, gate: dict, env: dict | None = None) -> list[dict]:
    """As in a crash during the last epoch (its checkpoint gone, gate.json back to the epochs before it), then
    `sftplan run` again: asserts it finished and resumed from the epoch before; returns gate.json's epochs after it."""
    *kept, lost = gate["epochs"]
    shutil.rmtree(run_dir / lost["checkpoint"])
    (run_dir / "gate.json").write_text(json.dumps(dict(gate, epochs=kept)))
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run_dir / "train_result.json").read_text())["resumed_from"] == kept[-1]["checkpoint"]
    return json.loads((run_dir / "gate.json").read_text())["epochs"]


def one_line(text: str) -> str:
    """The one non-blank line of a refusal (asserting there is exactly one and no traceback)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text[-2000:]
    return lines[0]
