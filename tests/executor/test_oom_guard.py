"""The OOM guard: measured peak beside the estimate, and an out-of-memory inside a training step ending the run
with one line, exit code 3, status "oom", the last complete checkpoint intact and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tinyplan import ROOT, approved_plan_file, tiny_assets, tiny_plan

from executor import oom_guard

GIB = 2**30

INJECT = '''
import os
_step = int(os.environ.get("SFTPLAN_TEST_OOM_STEP", "0"))
if _step:
    import torch
    import transformers

    _orig = transformers.Trainer.training_step

    def _training_step(self, *args, **kwargs):
        if self.state.global_step + 1 >= _step:  # inside the step: as a CUDA allocation failing would
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (raised by the test)")
        return _orig(self, *args, **kwargs)

    transformers.Trainer.training_step = _training_step
'''


def test_check_warns_over_the_margin_and_names_the_component(tmp_path):
    plan = tiny_plan(tiny_assets(tmp_path, n_train=16, n_golden=2))
    plan.estimate.memory_per_gpu_gib = 10.0
    plan.estimate.memory_breakdown_gib = {"weights": 2.0, "activations": 5.0, "logits": 1.0, "gathered_layer": 0.0}
    fine = oom_guard.check(plan, {"max_allocated_bytes": int(10.5 * GIB), "max_reserved_bytes": 11 * GIB}, 3, 0)
    assert fine["measured"] and "warning" not in fine and fine["ratio_to_estimate"] == 1.05
    over = oom_guard.check(plan, {"max_allocated_bytes": 12 * GIB, "max_reserved_bytes": 13 * GIB}, 3, 1)
    assert "rank 1" in over["warning"] and "activations" in over["warning"] and "micro-batch" in over["warning"]
    # compared at the same level: the context and NCCL are outside the allocator, fragmentation inside reserved only
    plan.estimate.memory_breakdown_gib = {"weights": 2.0, "activations": 5.0, "logits": 1.0, "gathered_layer": 0.0,
                                          "cuda_context": 1.0, "nccl_buffers": 1.0, "fragmentation": 0.5}
    level = oom_guard.check(plan, {"max_allocated_bytes": int(8.5 * GIB), "max_reserved_bytes": 9 * GIB}, 3, 0)
    assert level["plan_allocated_bytes"] == int(7.5 * GIB) and level["plan_reserved_bytes"] == 8 * GIB  # of 10.0
    assert "warning" in level and "allocated" in level["warning"]  # 8.5 > 7.5 x 1.1
    frag = oom_guard.check(plan, {"max_allocated_bytes": int(7.5 * GIB), "max_reserved_bytes": 9 * GIB}, 3, 0)
    assert "fragmentation" in frag["warning"] and frag["reserved_ratio_to_estimate"] == round(9 / 8, 4)
    cpu = oom_guard.check(plan, None, 3, 0)
    assert cpu["measured"] is False and "not measured" in cpu["note"]


@pytest.mark.slow
def test_out_of_memory_in_a_training_step_ends_the_run_cleanly(tmp_path):
    assets = tiny_assets(tmp_path / "tiny", n_train=32, n_golden=2)
    plan = tiny_plan(assets, epochs=3, micro_batch_size=4)  # 8 steps per epoch
    plan_path = approved_plan_file(tmp_path, plan)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    run_dir = tmp_path / "run"
    env = dict(os.environ, SFTPLAN_TEST_OOM_STEP="11", PYTHONPATH=os.pathsep.join([str(inject), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if "out of memory at step" in ln]
    assert lines and lines[-1].startswith("sftplan: out of memory at step 11")
    assert "plan estimate" in lines[-1] and "measured peak so far" in lines[-1] and "nearest configuration" in lines[-1]
    log = (run_dir / "log.txt").read_text() if (run_dir / "log.txt").is_file() else ""
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout and "Traceback" not in log
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "oom"
    oom = json.loads((run_dir / "oom.json").read_text())
    assert oom["step"] == 11 and oom["completed_steps"] == 10 and oom["nearest_fit"]
    # The epoch-1 checkpoint (step 8) was completed before the OOM and is left as it was.
    done = sorted(p.name for p in run_dir.glob("checkpoint-*") if (p / "COMPLETE").is_file())
    assert done == ["checkpoint-8"] and (run_dir / "checkpoint-8" / "model.safetensors").is_file()
    # The memory check ran after the first 3 steps (no accelerator here: recorded as not measured).
    mem = json.loads((run_dir / "memory" / "rank-0.json").read_text())
    assert mem["step"] == 3 and mem["measured"] is False and mem["plan_estimate_bytes"] > 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "oom" and report["oom"]["step"] == 11 and report["memory_check"][0]["rank"] == 0
