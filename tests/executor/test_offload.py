"""zero3-offload, the strategy the planner falls back to where nothing fits on the GPUs (advisor/plan_search.py),
run for real: `sftplan run` -> the deepspeed launcher -> 2 processes on CPU (gloo), as a user starts it.

It asserts that what the plan says runs: ZeRO-3 holds half the parameters on each rank, and the optimizer step
is DeepSpeed's host one (ZeRO-3's offload_optimizer flag set, DeepSpeedCPUAdam at the end of the optimizer chain:
transformers builds it when the DeepSpeed config has no optimizer block and the optimizer is offloaded); the only
op compiled is cpu_adam. Every epoch's checkpoint is complete and loadable, training lowered the golden loss, and
a run that lost epoch 2 resumes from the epoch-1 checkpoint (its host-side optimizer states included) to the
same epoch-2 loss.
"""

import json

import pytest

from tinyplan import approved_plan_file, finished_epochs, resume_after_losing_last_epoch, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=32, n_golden=4)


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """One build folder for the module: cpu_adam compiles once (~40 s), the second test reuses it."""
    return tmp_path_factory.mktemp("torch_extensions")


def test_zero3_offload_steps_on_the_host_and_resumes(assets, ext, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy="zero3-offload", num_gpus=2, epochs=2))
    run_dir = tmp_path / "run"
    env = {"TORCH_EXTENSIONS_DIR": str(ext)}
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in ext.iterdir()) == ["cpu_adam"], "only DeepSpeed's CPU Adam is built"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["strategy"] == "zero3-offload" and "deepspeed" in info["launch"][0]
    zero = json.loads((run_dir / "config" / "deepspeed.json").read_text())["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and "offload_param" not in zero

    reports = [json.loads((run_dir / "shards" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for rep in reports:
        assert rep["param_kinds"] == ["zero3-partition"] and rep["local_param_numel"] <= rep["full_param_numel"] * 0.55
        assert rep["zero_offload"] == {"optimizer": True, "param": False}, rep
        assert rep["optimizer_chain"][-1] == "DeepSpeedCPUAdam", rep["optimizer_chain"]
        assert "DeepSpeedZeroOptimizer_Stage3" in rep["optimizer_chain"]

    gate = finished_epochs(run_dir)
    first, second = gate["epochs"]
    assert all(epoch["score"]["loss"] < gate["baseline"]["loss"] for epoch in (first, second))

    again = resume_after_losing_last_epoch(plan_path, run_dir, gate, env=env)
    assert again[0] == first and again[1]["score"]["loss"] == pytest.approx(second["score"]["loss"], rel=1e-6)


def test_zero3_offload_all_keeps_the_parameters_on_the_host_too(assets, ext, tmp_path):
    """zero3-offload-all (pinned by the user; the planner never picks it): parameters offloaded as well."""
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy="zero3-offload-all", num_gpus=2, epochs=1))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), env={"TORCH_EXTENSIONS_DIR": str(ext)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    zero = json.loads((run_dir / "config" / "deepspeed.json").read_text())["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    for r in (0, 1):
        rep = json.loads((run_dir / "shards" / f"rank-{r}.json").read_text())
        assert rep["zero_offload"] == {"optimizer": True, "param": True}, rep
        assert rep["optimizer_chain"][-1] == "DeepSpeedCPUAdam"
        assert rep["local_param_numel"] <= rep["full_param_numel"] * 0.55
    assert len(finished_epochs(run_dir)["epochs"]) == 1
