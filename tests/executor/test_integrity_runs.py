"""Real tiny runs for issue 11 points 1-2: the approved data bytes are what trains; damaged checkpoints are found,
named in one line, never resumed from or promoted; the baseline belongs to the base model; a non-finite loss stops
the run."""

import json
import os
import subprocess
import sys
import time

import pytest

from tinyplan import ROOT, approved_plan_file, sftplan, tiny_assets, tiny_plan

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
    plan = plan.model_copy(update={"request": plan.request.model_copy(update={
        "dataset": plan.request.dataset.model_copy(update={"file": plan.request.dataset.file.model_copy(
            update={"path": str(data / "train.jsonl")})})})})
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
