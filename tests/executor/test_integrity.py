"""What trains is what was approved (issue 11.1): the run folder's plan copy, the data bytes and the base
model are verified where they are read, on every rank; a damaged checkpoint or gate file is named in one line.

Fast cases only (refusals before training); the real runs are in test_integrity_runs.py."""

import json
import subprocess

import pytest

from tinyplan import ROOT, approved_plan_file, sftplan, tiny_assets, tiny_plan


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=16, n_golden=2)


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text[-2000:]
    return lines[0]


def _edit_plan(src, dst):
    """The issue's reproduction: the same plan with 1 epoch at lr 0.3, its plan_sha256 and approval left as is."""
    text = src.read_text()
    assert "\n  epochs: 2\n" in text and "\n  learning_rate: 0.003\n" in text
    dst.write_text(text.replace("\n  epochs: 2\n", "\n  epochs: 1\n").replace("\n  learning_rate: 0.003\n",
                                                                          "\n  learning_rate: 0.3\n"))


def test_preseeded_edited_plan_copy_is_refused(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2))
    run_dir = tmp_path / "R"
    run_dir.mkdir()
    _edit_plan(plan_path, run_dir / "plan.yaml")
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), "--allow-mismatch")
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "plan.yaml is not the approved plan" in line and "edited after approval" in line
    assert not (run_dir / "run.json").exists() and not list(run_dir.glob("checkpoint-*"))


def test_node_script_verifies_the_plan_it_trains_on(assets, tmp_path):
    """config/launch.sh (like node-<i>.sh and sbatch.sh) starts executor.train directly: the trainer itself refuses
    an edited run-folder plan, and an approved plan other than the one the folder was configured for."""
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    _edit_plan(plan_path, run_dir / "plan.yaml")  # e.g. edited after a STOP
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "edited after approval" in _one_line(proc.stderr) and not list(run_dir.glob("checkpoint-*"))
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))  # and `sftplan run` refuses before launching
    assert proc.returncode == 2 and "is not the approved plan" in _one_line(proc.stderr)

    other = approved_plan_file(tmp_path, tiny_plan(assets, epochs=1), "other.yaml")  # approved, but not this run's
    (run_dir / "plan.yaml").write_text(other.read_text())
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "configured for plan" in _one_line(proc.stderr)


def test_trainer_refuses_data_that_is_not_the_approved_bytes(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets))
    run_dir = tmp_path / "R"
    assert sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run").returncode == 0
    inputs = json.loads((run_dir / "config" / "inputs.json").read_text())
    staged = run_dir / "data" / "train.jsonl"
    assert inputs["train"] == str(staged.resolve()) and staged.read_bytes() == (assets / "train.jsonl").read_bytes()
    staged.chmod(0o644)
    staged.write_text(staged.read_text().replace('"3"', '"4"', 1) if '"3"' in staged.read_text()
                      else staged.read_text() + '{"prompt": "add 1 1", "response": "2"}\n')
    proc = subprocess.run(["bash", str(run_dir / "config" / "launch.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "is not the approved bytes" in _one_line(proc.stderr)
