"""SIGKILL mid-epoch, then `sftplan run` again: it resumes from the latest COMPLETE checkpoint (never a
half-written one) and reaches the same golden losses, epoch by epoch, as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinyplan import ROOT, approved_plan_file, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow
ROWS, MICRO = 240, 4
STEPS_PER_EPOCH = ROWS // MICRO


def _last_step(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]
    return max(steps, default=0)


def _become_subreaper():
    """Orphans of the killed run are re-parented to this process (not to a PID 1 that may never reap them,
    as in some containers), so they can be reaped and their pids are really gone afterwards."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _kill_mid_epoch_two(plan_path, run_dir):
    _become_subreaper()
    outer = subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)],
                             cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while _last_step(run_dir) <= STEPS_PER_EPOCH + 2:
            assert outer.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the run did not reach epoch 2"
            time.sleep(0.01)
        launcher = json.loads((run_dir / "run.json").read_text())["pid"]
        os.killpg(launcher, signal.SIGKILL)  # torchrun and the trainer: a crash, no clean-up
        os.killpg(outer.pid, signal.SIGKILL)
    finally:
        outer.wait(timeout=60)
        _reap_all()


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    assets = tiny_assets(tmp_path, n_train=ROWS, n_golden=4)
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2, micro_batch_size=MICRO))

    ref = tmp_path / "reference"
    proc = sftplan("run", str(plan_path), "--out", str(ref))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_gate = json.loads((ref / "gate.json").read_text())

    run = tmp_path / "killed"
    _kill_mid_epoch_two(plan_path, run)
    first = run / f"checkpoint-{STEPS_PER_EPOCH}"
    assert (first / "COMPLETE").is_file()
    assert [e["epoch"] for e in json.loads((run / "gate.json").read_text())["epochs"]] == [1]
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # nobody lived to say otherwise
    # a checkpoint cut off while being written: no COMPLETE marker; it must never be resumed from
    half = run / f"checkpoint-{2 * STEPS_PER_EPOCH}"
    half.mkdir(exist_ok=True)
    (half / "trainer_state.json").write_text("{\"global_step\": 120, \"trunc")

    proc = sftplan("run", str(plan_path), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "train_result.json").read_text())
    assert result["resumed_from"] == first.name
    assert any(f"removed incomplete {half.name}" in n for n in result["notes"])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["restarted_at"]
    gate = json.loads((run / "gate.json").read_text())
    assert gate["baseline"] == ref_gate["baseline"]
    assert [e["epoch"] for e in gate["epochs"]] == [1, 2]
    for got, want in zip(gate["epochs"], ref_gate["epochs"]):
        assert got["checkpoint"] == want["checkpoint"]
        assert got["score"]["loss"] == pytest.approx(want["score"]["loss"], rel=1e-6, abs=1e-7)
    assert all((run / e["checkpoint"] / "COMPLETE").is_file() for e in gate["epochs"])
