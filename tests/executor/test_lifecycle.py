"""issue 11.3: every way a run ends is recorded. Real processes, real signals, a real lock, a real full disk:

- two `sftplan run` on one folder at the same instant: one trains, the other refuses in one line;
- SIGTERM / SIGHUP to `sftplan run`: the workers stop at a safe point, run.json says stopped, the report
  is written, a rerun resumes and finishes;
- SIGKILL of the launcher pid recorded in run.json (torchrun, 2 workers): no worker trains on;
- a disk that fills during the run: one line, status failed, report written, last complete checkpoint kept.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyplan import ROOT, approved_plan_file, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow
ROWS, MICRO = 64, 4
STEPS = ROWS // MICRO


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=ROWS, n_golden=4)


def start(plan_path, run_dir, **kw):
    return subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def last_step(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    return max((json.loads(l)["step"] for l in path.read_text().splitlines() if l.endswith("}")), default=0)


def wait_for(cond, proc, timeout=300, what="the run"):
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, f"{what} ended first: {proc.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def trainers_of(run_dir):
    """pids of live processes training in run_dir (any executor.train whose command line names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        args = cmd.split(b"\0")
        launcher = any(a.endswith((b"/torchrun", b"/deepspeed")) or a == b"deepspeed.launcher.launch" for a in args)
        if b"executor.train" in args and str(run_dir).encode() in cmd and not launcher and state not in ("Z", "X"):
            found.append(int(entry))
    return found


def test_two_runs_at_the_same_instant_one_refuses(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=1, micro_batch_size=MICRO))
    run_dir = tmp_path / "run"
    a, b = start(plan_path, run_dir), start(plan_path, run_dir)
    results = [(p.wait(timeout=600), *p.communicate()) for p in (a, b)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[0] == 2)[2].strip().splitlines()
    assert len(refused) == 1 and "Traceback" not in refused[0]
    assert "another `sftplan run` holds this run folder" in refused[0] or "in progress" in refused[0]
    assert (run_dir / "log.txt").read_text().count("\n=== ") == 1  # one launch only
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("sig, strategy, gpus", [(signal.SIGTERM, "ddp", 2), (signal.SIGHUP, "single", 1)])
def test_stop_signal_stops_at_a_safe_point_and_is_recorded(assets, tmp_path, sig, strategy, gpus):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy=strategy, num_gpus=gpus, epochs=2,
                                                       micro_batch_size=MICRO // gpus))
    run_dir = tmp_path / "run"
    proc = start(plan_path, run_dir)
    wait_for(lambda: last_step(run_dir) > STEPS + 2, proc, what="epoch 2")
    workers = trainers_of(run_dir)
    assert len(workers) == gpus
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + sig, err[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "stopped" and info["signal"] == sig.name and info["pid"] is None
    assert any(f"{sig.name} received: the workers stopped at a safe point" in n for n in info["notes"]), info["notes"]
    assert any("stopped by SIGTERM at step" in n for n in info["notes"]), info["notes"]  # forwarded to each worker
    assert (run_dir / "report.md").is_file() and "stopped" in (run_dir / "report.md").read_text()
    assert trainers_of(run_dir) == []
    assert (run_dir / f"checkpoint-{STEPS}" / "COMPLETE").is_file()
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == [f"checkpoint-{STEPS}"]  # none at the stop step
    assert [e["epoch"] for e in json.loads((run_dir / "gate.json").read_text())["epochs"]] == [1]
    again = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from checkpoint-{STEPS}" in again.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_killing_the_recorded_pid_leaves_no_worker_training(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy="ddp", num_gpus=2, epochs=3,
                                                       micro_batch_size=MICRO // 2))
    run_dir = tmp_path / "run"
    proc = start(plan_path, run_dir)
    wait_for(lambda: last_step(run_dir) > 3, proc, what="training")
    info = json.loads((run_dir / "run.json").read_text())
    workers = trainers_of(run_dir)
    assert len(workers) == 2 and info["pid"] not in workers and info["pgid"] == info["pid"]
    os.kill(info["pid"], signal.SIGKILL)  # torchrun alone: its workers live in sessions of their own
    deadline = time.time() + 120
    while trainers_of(run_dir) and time.time() < deadline:
        time.sleep(0.1)
    assert trainers_of(run_dir) == [], "workers went on training after their launcher was killed"
    proc.communicate(timeout=120)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] in ("stopped", "failed") and info["pid"] is None and info["exit_code"] == -signal.SIGKILL
    assert (run_dir / "report.md").is_file()


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_disk_full_during_the_run_is_one_line_and_recorded(assets, tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "24m"):
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    try:
        plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=3, micro_batch_size=MICRO))
        run_dir = disk / "run"
        proc = start(plan_path, run_dir)
        first = run_dir / f"checkpoint-{STEPS}" / "COMPLETE"
        wait_for(first.is_file, proc, what="the first checkpoint")
        free = shutil.disk_usage(disk).free
        with open(disk / "filler", "wb") as fh:  # another process fills the disk
            fh.write(b"\0" * max(0, free - 256 * 1024))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err[-3000:]
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "failed" and "no space left on device" in info["error"]
        assert "Traceback" not in err and "no space left on device" in out.splitlines()[-1]
        assert first.is_file() and not (run_dir / f"checkpoint-{2 * STEPS}").exists()
        assert (run_dir / "report.md").is_file()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_prompt_longer_than_max_seq_len_is_one_line_by_file_line(assets, tmp_path):
    """issue 11.4: the plan's rule, applied by the run: a prompt that fills max_seq_len refuses the run before it
    trains, naming file:line (never a traceback numbered by row index)."""
    from tinyplan import tiny_assets as _assets  # noqa: F401

    data = tmp_path / "assets"
    shutil.copytree(assets, data)
    train = data / "train.jsonl"
    with open(train, "a") as fh:
        fh.write("\n" + json.dumps({"prompt": "reverse cat dog " * 100, "response": "x"}) + "\n")
    line = len(train.read_text().split("\n")) - 1
    plan_path = approved_plan_file(tmp_path, tiny_plan(data, epochs=1, micro_batch_size=MICRO))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 1
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "1 rows have no answer token within max_seq_len 96" in info["error"]
    assert info["error"].endswith(f"{train}:{line}"), info["error"]  # the approved file, not the staged copy
    assert "Traceback" not in (run_dir / "log.txt").read_text()
    assert not list(run_dir.glob("checkpoint-*"))


def test_sigusr1_prints_a_workers_stacks_and_it_goes_on():
    """A worker that seems stuck: `kill -USR1 <pid>` writes every thread's Python stack to its stderr (the run's
    log) and the worker carries on (faulthandler, registered by worker_start)."""
    code = ("import os, signal, sys\n"
            "from executor.lifecycle import worker_start\n"
            "worker_start()\n"
            "def waiting_here():\n"
            "    os.kill(os.getpid(), signal.SIGUSR1)\n"
            "waiting_here()\n"
            "print('still running')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "still running" in proc.stdout, proc.stderr
    assert "waiting_here" in proc.stderr and "Current thread" in proc.stderr, proc.stderr
