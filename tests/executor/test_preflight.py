"""Preflight: every refusal is one line (exit-2 UserError), and nothing heavy is imported."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.errors import UserError
from advisor.modelfiles import model_files
from advisor.models import (
    Checkpointing, DataFile, DatasetSpec, Evaluation, Hyperparameters, LoraAlternative, ModelSummary, Plan, PlanEstimate,
    PlanRequest, Recommended,
)
from advisor.planfile import approve, with_hash, write_plan
from executor.preflight import _type_matches, run_preflight

GOOD_ROWS = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
             {"prompt": "2+2?", "response": "4"},
             {"instruction": "add", "input": "1 1", "output": "2"}]


def _data_file(path: Path, rows: list) -> DataFile:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return DataFile(path=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), rows=len(rows))


def make_plan(tmp_path: Path, *, method="full-sft", gpu="h100-sxm", num_gpus=2, disk_gib=0.001, recommended=True,
              model_path=None, rows=None) -> Plan:
    data = _data_file(tmp_path / "train.jsonl", rows or GOOD_ROWS)
    golden = _data_file(tmp_path / "golden.jsonl", [{"prompt": "2+2?", "expected": "4"}])
    rec = Recommended(gpu=gpu, num_gpus=num_gpus, num_nodes=1, strategy="fsdp", micro_batch_size=1, grad_accum=1,
                      activation_checkpointing=False)
    return with_hash(Plan(
        request=PlanRequest(model="tiny", model_path=model_path, golden=golden,
                            model_files=model_files("tiny", model_path) if model_path else None,
                            dataset=DatasetSpec(examples=len(GOOD_ROWS), avg_tokens=10, file=data)),
        model=ModelSummary(name="tiny", family="llama", source="config.json", params=1000, active_params=1000),
        method=method, findings=[], recommended=rec if recommended else None,
        estimate=PlanEstimate(memory_per_gpu_gib=0.1, memory_breakdown_gib={}, cpu_memory_per_node_gib=0.0, hours=0.01,
                              cost_usd=0.1, tokens_total=100, tokens_per_s_per_gpu=1000.0, step_time_s=0.1, mfu=0.1,
                              steps_per_epoch=3, total_steps=9),
        tiers=[],
        hyperparameters=Hyperparameters(learning_rate=1e-3, warmup_ratio=0.0, weight_decay=0.0, epochs=3, max_seq_len=64,
                                        global_batch_size=2, global_batch_tokens=128),
        checkpointing=Checkpointing(disk_gib_per_checkpoint=disk_gib, disk_gib=disk_gib * 3),
        evaluation=Evaluation(golden=golden, tolerance=0.02),
        lora_alternative=LoraAlternative(),
    ))


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    """A fake nvidia-smi on PATH listing the given device names."""
    bindir = tmp_path / "bin"
    bindir.mkdir()

    def set_devices(*names):
        lines = "".join(f"GPU {i}: {n} (UUID: GPU-{i})\\n" for i, n in enumerate(names))
        script = bindir / "nvidia-smi"
        script.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    return set_devices


def approved(tmp_path, **kw) -> tuple[Path, Plan]:
    plan = approve(make_plan(tmp_path, **kw), "Ada")
    path = tmp_path / "plan.yaml"
    write_plan(plan, path)
    return path, plan


def test_good_plan_passes_with_notes(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path)
    notes = run_preflight(path, plan, tmp_path / "run")
    assert any(n.startswith("dataset ") and "3 rows" in n for n in notes)
    assert any(n.startswith("devices: 2 visible") for n in notes)
    assert any(n.startswith("disk: need") for n in notes)


def test_unapproved_refused(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    plan = make_plan(tmp_path)
    with pytest.raises(UserError, match="not approved"):
        run_preflight(tmp_path / "plan.yaml", plan, tmp_path / "run")


def test_edited_after_approval_refused(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    _, plan = approved(tmp_path)
    edited = plan.replace(**{"hyperparameters": plan.hyperparameters.replace(**{"learning_rate": 1.0})})
    with pytest.raises(UserError, match="edited after approval"):
        run_preflight(tmp_path / "plan.yaml", edited, tmp_path / "run")


def test_data_changed_or_missing_refused(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path)
    with open(tmp_path / "train.jsonl", "a") as fh:
        fh.write(json.dumps({"prompt": "sneaky", "response": "row"}) + "\n")
    with pytest.raises(UserError, match=r"dataset .*train.jsonl changed since approval"):
        run_preflight(path, plan, tmp_path / "run")
    (tmp_path / "train.jsonl").unlink()
    with pytest.raises(UserError, match="no such file"):
        run_preflight(path, plan, tmp_path / "run")


def test_golden_changed_refused(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path)
    (tmp_path / "golden.jsonl").write_text(json.dumps({"prompt": "2+2?", "expected": "5"}) + "\n")
    with pytest.raises(UserError, match="golden set .* changed since approval"):
        run_preflight(path, plan, tmp_path / "run")


def test_bad_rows_all_named_in_one_line(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    rows = GOOD_ROWS + [{"prompt": "no answer"}, {"messages": "not a list"}]
    path, plan = approved(tmp_path, rows=rows)
    with pytest.raises(UserError) as exc:
        run_preflight(path, plan, tmp_path / "run")
    msg = str(exc.value)
    assert "train.jsonl:4:" in msg and msg.endswith("(and 1 more bad training row: lines 5)") and "\n" not in msg


def test_not_enough_disk(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path, disk_gib=10_000_000.0)
    with pytest.raises(UserError, match="not enough free disk: need .* for 3 \\+ 1 checkpoints"):
        run_preflight(path, plan, tmp_path / "run")


def test_disk_uses_the_real_model_size_when_the_plan_is_smaller(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    with open(model_dir / "model.safetensors", "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + 4_000_000)
    path, plan = approved(tmp_path, disk_gib=0.0, model_path=str(model_dir))
    notes = run_preflight(path, plan, tmp_path / "run")
    disk = next(n for n in notes if n.startswith("disk:"))
    assert "measured from" in disk and "0.015 GiB" in disk  # 1M params x (4 sharded fp32 + 4 full weights + 8 Adam moments)


def test_device_count_and_type_mismatch(tmp_path, gpus):
    path, plan = approved(tmp_path)
    gpus("NVIDIA H100 80GB HBM3")
    with pytest.raises(UserError, match="plan wants 2 x h100-sxm per node, 1 visible"):
        run_preflight(path, plan, tmp_path / "run")
    gpus("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB")
    with pytest.raises(UserError, match="plan wants h100-sxm, visible devices are NVIDIA A100"):
        run_preflight(path, plan, tmp_path / "run")
    notes = run_preflight(path, plan, tmp_path / "run", allow_mismatch=True)
    assert any(n.startswith("allow-mismatch: plan wants h100-sxm") for n in notes)


def test_no_accelerator_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    path, plan = approved(tmp_path)
    with pytest.raises(UserError, match=r"0 visible \(none; no nvidia-smi"):
        run_preflight(path, plan, tmp_path / "run")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert any(n.startswith("devices: 2 visible") for n in run_preflight(path, plan, tmp_path / "run"))


def test_type_matching():
    assert _type_matches("h100-sxm", "NVIDIA H100 80GB HBM3")
    assert _type_matches("a100-80gb", "NVIDIA A100-SXM4-80GB")
    assert not _type_matches("a100-40gb", "NVIDIA A100-SXM4-80GB")
    assert not _type_matches("h100-sxm", "NVIDIA L40S")


def test_foreign_run_folder_refused(tmp_path, gpus):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"plan_sha256": "f" * 64, "status": "finished"}))
    with pytest.raises(UserError, match="holds another plan's run"):
        run_preflight(path, plan, run)
    (run / "run.json").write_text(json.dumps({"plan_sha256": plan.plan_sha256, "status": "stopped"}))
    assert any("resuming" in n for n in run_preflight(path, plan, run))
    (run / "run.json").unlink()
    (run / "checkpoint-3").mkdir()
    with pytest.raises(UserError, match="unidentified run"):
        run_preflight(path, plan, run)
    (run / "plan.yaml").write_text("plan_sha256: " + "e" * 64 + "\n")
    with pytest.raises(UserError, match="plan.yaml has plan_sha256 eeeeeeeeeeee"):
        run_preflight(path, plan, run)


def test_lora_passes_unplanned_refused(tmp_path):
    from executor.preflight import check_plan

    path, plan = approved(tmp_path, method="lora")
    check_plan(plan)  # LoRA plans run (executor/lora.py); the same approval checks apply
    path, plan = approved(tmp_path, recommended=False)
    with pytest.raises(UserError, match="no recommended configuration"):
        run_preflight(path, plan, tmp_path / "run")


def test_preflight_imports_no_torch():
    code = ("import sys, executor.preflight, executor.evalgate, executor.promote, executor.report; "
            "bad = [m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stdout + out.stderr


def test_cuda_visible_devices_filters_nvidia_smi(tmp_path, gpus, monkeypatch):
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    path, plan = approved(tmp_path)
    notes = run_preflight(path, plan, tmp_path / "run")
    assert any(n.startswith("devices: 2 visible") for n in notes)


def _running_run_dir(tmp_path, gpus, pid):
    """An approved plan and a run folder whose run.json says 'running' under the launcher ``pid``."""
    gpus("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3")
    path, plan = approved(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"plan_sha256": plan.plan_sha256, "status": "running", "pid": pid}))
    return path, plan, run


def test_a_live_run_of_the_same_plan_is_refused(tmp_path, gpus):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path, plan, run = _running_run_dir(tmp_path, gpus, sleeper.pid)
        with pytest.raises(UserError, match=f"in progress \\(pid {sleeper.pid}\\)"):
            run_preflight(path, plan, run)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert any("resuming" in n for n in run_preflight(path, plan, run))  # killed: a resume is fine


def test_a_zombie_launcher_does_not_block_a_resume(tmp_path, gpus):
    from executor.preflight import process_state

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # exited but not reaped: a zombie
            if process_state(child.pid) == "Z":
                break
            time.sleep(0.05)
        assert process_state(child.pid) == "Z"
        path, plan, run = _running_run_dir(tmp_path, gpus, child.pid)
        assert any("resuming" in n for n in run_preflight(path, plan, run))
    finally:
        child.wait()


def test_run_without_the_train_extra_is_one_clear_line(monkeypatch):
    import importlib.util

    from executor.preflight import require_train_packages

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "deepspeed") else real(name, *a))
    with pytest.raises(UserError, match=r"train extra.*missing: torch, deepspeed"):
        require_train_packages("zero3")
    with pytest.raises(UserError, match=r"missing: torch\)"):
        require_train_packages("fsdp")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    require_train_packages("zero3")  # this venv has them all
