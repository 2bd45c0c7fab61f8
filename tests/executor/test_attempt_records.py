"""Every way a run ends is recorded, per attempt (run.json ``attempts``), and a damaged checkpoint is kept.

Unit level: ``_attempts`` / ``finish`` / ``_run_locked`` of executor/run.py with a stand-in launcher, and
``set_aside_damaged`` of executor/integrity.py. One real run: SIGINT, then SIGKILL of `sftplan run`, then a rerun.
"""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from executor import run as runmod
from executor.run import Launched, _attempts, finish

NO_RECORD = "ended without a record (killed?)"


def _plan():
    from test_report import plan_for_report

    return plan_for_report()


def _read(run_dir):
    return json.loads((run_dir / "run.json").read_text())


def _launched(rc=0, sig=None, error=None):
    done = Launched()
    done.rc, done.signal, done.error = rc, sig, error
    return done


def _start_attempt(run_dir):
    previous = _read(run_dir) if (run_dir / "run.json").is_file() else {}
    runmod._write_run(run_dir, plan_sha256="x", status="running", started_at=previous.get("started_at") or runmod._now(),
                      finished_at=None, notes=[], signal=None, exit_code=None, error=None,
                      attempts=_attempts(run_dir, previous), pid=4242)


def _finish(run_dir, done, result):
    (run_dir / "train_result.json").write_text(json.dumps(result))
    said = []
    code = finish(_plan(), run_dir, done, ["preflight note"], say=said.append)
    (run_dir / "train_result.json").unlink()
    return code, said


STOPPED_51 = {"global_step": 51, "max_steps": 64, "stopped": True, "notes": ["stopped by SIGTERM at step 51"]}
FINISHED = {"global_step": 64, "max_steps": 64, "stopped": False, "notes": []}


def test_sigint_records_the_exit_code_the_cli_returns_and_one_signal(tmp_path):
    _start_attempt(tmp_path)
    code, _ = _finish(tmp_path, _launched(rc=0, sig="SIGINT"), STOPPED_51)
    info = _read(tmp_path)
    assert code == 130 and info["exit_code"] == 130 and info["launcher_exit_code"] == 0
    assert info["status"] == "stopped" and info["signal"] == "SIGINT"
    worker = [n for n in info["notes"] if n.startswith("stopped by SIGTERM at step 51")]
    assert worker and "received SIGINT" in worker[0] and "forwarded it to each worker as SIGTERM" in worker[0]
    assert "SIGINT received: the workers stopped at a safe point" in info["notes"]
    last = info["attempts"][-1]
    assert last["status"] == "stopped" and last["signal"] == "SIGINT" and last["exit_code"] == 130
    assert last["ended"] == "stopped by SIGINT at step 51 (exit code 130)" and last["finished_at"]


def test_sigterm_note_is_left_as_the_worker_wrote_it(tmp_path):
    _start_attempt(tmp_path)
    code, _ = _finish(tmp_path, _launched(rc=0, sig="SIGTERM"), STOPPED_51)
    info = _read(tmp_path)
    assert code == 143 and info["exit_code"] == 143 and "stopped by SIGTERM at step 51" in info["notes"]


def test_a_killed_launcher_keeps_its_exit_code_and_the_attempt_says_failed(tmp_path):
    _start_attempt(tmp_path)
    code, _ = _finish(tmp_path, _launched(rc=-9), {})
    info = _read(tmp_path)
    assert code == 1 and info["exit_code"] == -9 and info["status"] == "failed"
    last = info["attempts"][-1]
    assert last["status"] == "failed" and last["exit_code"] == 1 and last["launcher_exit_code"] == -9
    assert last["ended"].startswith("failed (exit code 1, launcher exit code -9)")


def test_every_attempt_keeps_how_it_ended_and_a_sigkilled_one_says_so(tmp_path):
    """SIGINT stop, then an attempt SIGKILLed (run.json left 'running', still carrying SIGINT), then a finish."""
    _start_attempt(tmp_path)
    _finish(tmp_path, _launched(rc=0, sig="SIGINT"), STOPPED_51)
    _start_attempt(tmp_path)  # attempt 2 ... SIGKILLed: nothing closes it
    info = _read(tmp_path)
    assert info["status"] == "running" and info["signal"] is None and info["exit_code"] is None  # not attempt 1's
    (tmp_path / "log.txt").write_text("step 60\n")
    t = time.time() - 5
    os.utime(tmp_path / "log.txt", (t, t))
    _start_attempt(tmp_path)  # attempt 3
    _finish(tmp_path, _launched(rc=0), FINISHED)
    attempts = _read(tmp_path)["attempts"]
    assert len(attempts) == 3
    assert attempts[0]["ended"] == "stopped by SIGINT at step 51 (exit code 130)"
    assert attempts[1]["status"] == "unrecorded" and attempts[1]["signal"] is None
    assert attempts[1]["ended"].startswith(NO_RECORD) and attempts[1]["finished_at"] == runmod._stamp(
        runmod.datetime.fromtimestamp(t, runmod.timezone.utc))
    assert attempts[2]["status"] == "finished" and attempts[2]["ended"] == "finished (exit code 0)"
    assert all(a["finished_at"] for a in attempts)
    report = json.loads((tmp_path / "report.json").read_text())  # the report still reads run.json
    assert report["status"] == "finished" and "3 launches" in report["figures"]["hours"]["how"]


def test_an_old_run_json_without_attempt_endings_is_read(tmp_path):
    old = {"status": "stopped", "signal": "SIGHUP", "exit_code": 0, "started_at": "2026-01-01T00:00:00Z",
           "finished_at": "2026-01-01T01:00:00Z",
           "attempts": [{"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T01:00:00Z"}]}
    out = _attempts(tmp_path, old)
    assert out[0]["ended"] == "stopped by SIGHUP (exit code 129)" and out[0]["launcher_exit_code"] == 0
    assert len(out) == 2 and out[1]["finished_at"] is None


def test_the_rerun_says_the_previous_attempt_ended_without_a_record(tmp_path, monkeypatch):
    (tmp_path / "run.json").write_text(json.dumps({
        "plan_sha256": "x", "status": "running", "signal": "SIGINT", "exit_code": 0, "started_at": "2026-01-01T00:00:00Z",
        "attempts": [{"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:10:00Z",
                      "status": "stopped", "signal": "SIGINT", "exit_code": 130, "ended": "stopped by SIGINT (exit code 130)"},
                     {"started_at": "2026-01-01T01:00:00Z", "finished_at": None, "status": "running"}]}))
    import executor.launch as launch_mod

    monkeypatch.setattr(runmod, "write_config", lambda *a, **k: {})
    monkeypatch.setattr(launch_mod, "single_node_argv", lambda *a, **k: ["true"])
    monkeypatch.setattr(launch_mod, "run_port", lambda: 29500)
    monkeypatch.setattr(runmod, "_versions", lambda: {})
    monkeypatch.setattr(runmod, "_device", lambda: "cpu")
    seen = {}
    monkeypatch.setattr(runmod, "launch", lambda *a, **k: seen.setdefault("run", _read(tmp_path)) and _launched())
    monkeypatch.setattr(runmod, "finish", lambda *a, **k: 0)
    plan = SimpleNamespace(plan_sha256="x", recommended=SimpleNamespace(num_nodes=1, strategy="single"))
    said = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: said.append(" ".join(map(str, a))))
    assert runmod._run_locked(SimpleNamespace(plan=plan), tmp_path / "plan.yaml", tmp_path, [], None, dry_run=False,
                              allow_mismatch=False, echo=True) == 0
    lines = [s for s in said if NO_RECORD in s]
    assert len(lines) == 1 and "started 2026-01-01T01:00:00Z" in lines[0], said
    info = seen["run"]
    assert info["status"] == "running" and info["signal"] is None and info["exit_code"] is None
    assert [a.get("status") for a in info["attempts"]] == ["stopped", "unrecorded", "running"]
    assert any(NO_RECORD in n for n in info["notes"]) and NO_RECORD in (tmp_path / "log.txt").read_text()


# --------------------------------------------------------------------------- damaged checkpoints


def _checkpoint(run_dir, step, damaged=False):
    from executor.names import write_complete

    ckpt = run_dir / f"checkpoint-{step}"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    write_complete(ckpt, step=step, epoch=1.0)
    if damaged:
        (ckpt / "model.safetensors").write_bytes(b"\xff" * 1024)
    return ckpt


def test_a_second_set_aside_of_the_same_step_keeps_the_first(tmp_path):
    from executor.integrity import set_aside_damaged

    _checkpoint(tmp_path, 4)
    earlier = tmp_path / "damaged-checkpoint-8"
    earlier.mkdir()
    (earlier / "what-was-there").write_text("kept for inspection\n")
    _checkpoint(tmp_path, 8, damaged=True)
    notes, damaged = set_aside_damaged(tmp_path)
    assert (earlier / "what-was-there").read_text() == "kept for inspection\n"
    assert (tmp_path / "damaged-checkpoint-8.2" / "model.safetensors").is_file()
    assert damaged[0]["checkpoint"] == "checkpoint-8" and damaged[0]["set_aside_as"] == "damaged-checkpoint-8.2"
    assert "set aside as damaged-checkpoint-8.2; resuming from checkpoint-4" in notes[0]
    _checkpoint(tmp_path, 8, damaged=True)  # and a third time
    notes, damaged = set_aside_damaged(tmp_path)
    assert damaged[0]["set_aside_as"] == "damaged-checkpoint-8.3" and (tmp_path / "damaged-checkpoint-8.2").is_dir()
    assert not (tmp_path / "checkpoint-8").exists()


def test_a_first_set_aside_keeps_the_plain_name(tmp_path):
    from executor.integrity import set_aside_damaged

    _checkpoint(tmp_path, 8, damaged=True)
    notes, damaged = set_aside_damaged(tmp_path)
    assert damaged[0]["set_aside_as"] == "damaged-checkpoint-8" and (tmp_path / "damaged-checkpoint-8").is_dir()
    assert "no complete checkpoint verifies" in notes[0]


# --------------------------------------------------------------------------- one real run


@pytest.mark.slow
def test_sigint_then_sigkill_then_rerun_records_every_attempt(tmp_path_factory, tmp_path):
    from test_lifecycle import last_step, start, trainers_of, wait_for
    from tinyplan import approved_plan_file, sftplan, tiny_assets, tiny_plan

    rows, micro = 64, 4
    assets = tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=rows, n_golden=4)
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=3, micro_batch_size=micro))
    run_dir = tmp_path / "run"
    proc = start(plan_path, run_dir)
    wait_for(lambda: last_step(run_dir) > rows // micro + 2, proc, what="epoch 2")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)
    info = json.loads((run_dir / "run.json").read_text())
    assert proc.returncode == 130 and info["exit_code"] == 130 and info["signal"] == "SIGINT"
    assert info["attempts"][-1]["ended"].startswith("stopped by SIGINT at step")

    proc = start(plan_path, run_dir)
    wait_for(lambda: json.loads((run_dir / "run.json").read_text()).get("status") == "running"
             and last_step(run_dir) > 2 * rows // micro + 1, proc, what="epoch 3")
    proc.kill()  # SIGKILL of `sftplan run`: nothing is left to record how it ended
    proc.communicate(timeout=60)
    deadline = time.time() + 120
    while trainers_of(run_dir) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    again = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert sum(NO_RECORD in line for line in (again.stdout + again.stderr).splitlines()) == 1
    attempts = json.loads((run_dir / "run.json").read_text())["attempts"]
    assert [a["status"] for a in attempts] == ["stopped", "unrecorded", "finished"], attempts
    assert attempts[0]["exit_code"] == 130 and attempts[1]["ended"].startswith(NO_RECORD)


def test_a_run_that_finishes_with_no_epoch_through_the_gate_exits_4_and_says_why(tmp_path):
    from executor.evalgate import record_baseline, record_epoch

    plan = _plan()
    record_baseline(tmp_path, {"loss": 2.0, "exact_match": 0.5, "contains": 0.5}, plan.evaluation)
    record_epoch(tmp_path, epoch=1, step=64, checkpoint="checkpoint-64",
                 score={"loss": 9.0, "exact_match": 0.0, "contains": 0.0}, evaluation=plan.evaluation)
    _start_attempt(tmp_path)
    code, said = _finish(tmp_path, _launched(rc=0), FINISHED)
    assert code == runmod.GATE_FAILED_EXIT_CODE == 4
    assert said[-1].startswith("run finished: ") and "no epoch passed the eval gate" in said[-1]
    info = _read(tmp_path)
    assert info["status"] == "finished" and any("no epoch passed the eval gate" in n for n in info["notes"])
    assert info["attempts"][-1]["ended"] == "finished (exit code 4, no epoch passed the eval gate)"
    # an epoch that passes: exit 0 as before
    record_epoch(tmp_path, epoch=2, step=128, checkpoint="checkpoint-128",
                 score={"loss": 1.9, "exact_match": 0.5, "contains": 0.5}, evaluation=plan.evaluation)
    _start_attempt(tmp_path)
    assert _finish(tmp_path, _launched(rc=0), FINISHED)[0] == 0
