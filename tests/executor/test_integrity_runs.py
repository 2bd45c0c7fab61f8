"""Real tiny runs for issue 11 points 1-2: the approved data bytes are what trains; damaged checkpoints are found,
named in one line, never resumed from or promoted; the baseline belongs to the base model; a non-finite loss stops
the run."""

import json
import os
import subprocess
import sys
import time

import pytest

from tinyplan import ROOT, approved_plan_file, one_line, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=16, n_golden=2)


def _start(plan_path, run_dir):
    return subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_overwriting_the_data_after_preflight_changes_nothing(assets, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.jsonl", "golden.jsonl"):
        (data / name).write_bytes((assets / name).read_bytes())
    plan = tiny_plan(assets, epochs=1)
    plan = plan.replace(**{"request": plan.request.replace(**{
        "dataset": plan.request.dataset.replace(**{"file": plan.request.dataset.file.replace(
            **{"path": str(data / "train.jsonl")})})})})
    from advisor.planfile import with_hash

    plan_path = approved_plan_file(tmp_path, with_hash(plan))
    run_dir = tmp_path / "run"
    proc = _start(plan_path, run_dir)
    deadline = time.time() + 120
    while not (run_dir / "config" / "inputs.json").is_file():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.005)
    (data / "train.jsonl").write_text('{"prompt": "add 1 1", "response": "2"}\n' * 40)  # in place, same inode
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "data: 16 rows" in out and "data: 40 rows" not in out
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def _overwrite_4k(path):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)


def test_damaged_newest_checkpoint_resume_falls_back_and_promote_refuses(assets, tmp_path):
    """4 KiB overwritten inside the newest checkpoint's model.safetensors, gate.json deleted: the rerun names the
    file, resumes from the previous checkpoint that verifies (log + run.json), keeps the base model's baseline
    (not re-scored on the resumed model); promote refuses the damaged epoch in one line."""
    import shutil

    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2, tolerance=10.0))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:]
    gate = json.loads((run_dir / "gate.json").read_text())
    first, newest = (run_dir / e["checkpoint"] for e in gate["epochs"])
    baseline = json.loads((run_dir / "baseline.json").read_text())
    assert baseline["score"] == gate["baseline"]

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    best = json.loads((copy / "gate.json").read_text())["epochs"]
    best = max(best, key=lambda e: (e["score"]["exact_match"], e["score"]["contains"], -e["score"]["loss"], e["epoch"]))
    _overwrite_4k(copy / best["checkpoint"] / "model.safetensors")
    proc = sftplan("promote", str(copy))
    assert proc.returncode == 2 and not (copy / "promoted").exists()
    assert f"{best['checkpoint']}/model.safetensors: damaged" in one_line(proc.stderr)

    _overwrite_4k(newest / "model.safetensors")
    (run_dir / "gate.json").unlink()
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:]
    said = f"checkpoint {newest.name} is damaged: {newest / 'model.safetensors'}: damaged"
    assert said in proc.stdout and f"resuming from {first.name}, the newest that verifies" in proc.stdout
    assert "golden baseline:" not in proc.stdout  # not re-scored
    result = json.loads((run_dir / "train_result.json").read_text())
    assert result["resumed_from"] == first.name and result["damaged_checkpoints"][0]["checkpoint"] == newest.name
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and any(said in n for n in info["notes"])
    assert json.loads((run_dir / "gate.json").read_text())["baseline"] == baseline["score"]
    assert (run_dir / f"damaged-{newest.name}").is_dir()
    from executor.names import check_complete

    assert check_complete(newest) == ""  # epoch 2 trained again from the verified checkpoint
    assert sftplan("promote", str(run_dir)).returncode == 0


def _poison(model_dir):
    """A real byte edit of the base model: the first lm_head weight becomes NaN (float32 0x7fc00000)."""
    import struct

    path = model_dir / "model.safetensors"
    with open(path, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        info = header["lm_head.weight"]
        assert info["dtype"] == "F32"
        fh.seek(8 + n + info["data_offsets"][0])
        fh.write(struct.pack("<f", float("nan")))


def test_non_finite_loss_stops_the_run_at_once(assets, tmp_path):
    import shutil

    from advisor.modelfiles import model_files
    from advisor.planfile import with_hash

    model = tmp_path / "model"
    shutil.copytree(assets / "model", model)
    _poison(model)
    plan = tiny_plan(assets, epochs=2)
    plan = with_hash(plan.replace(**{"request": plan.request.replace(**{
        "model": str(model), "model_path": str(model), "model_files": model_files(str(model), str(model))})}))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(approved_plan_file(tmp_path, plan)), "--out", str(run_dir))
    assert proc.returncode == 1
    assert "sftplan: non-finite training loss at step 1: nan; run stopped" in proc.stdout
    assert "Traceback" not in proc.stdout
    result = json.loads((run_dir / "train_result.json").read_text())
    assert result["failed"].startswith("non-finite training loss at step 1: nan")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert not list(run_dir.glob("checkpoint-*"))
