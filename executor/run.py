"""`sftplan run PLAN`: preflight -> config files -> launcher subprocess -> run.json status -> report.

Nothing heavy is imported here: preflight is pure, the training itself runs in the launcher's
processes (executor/train.py). ``--dry-run`` writes and prints the config files and the launch
command and trains nothing (it checks no disk, device or data: those are run-time checks). A
multi-node plan writes one script per node and an sbatch script and says how to submit them (this
command does not start other machines; each node runs executor/node.py).

Every way a run ends is recorded in run.json and the report (executor/lifecycle.py): the run folder
is flock'ed for the life of the run; SIGINT, SIGTERM and SIGHUP stop the workers at a safe step
(status "stopped", exit 128 + the signal); a launcher killed by anyone takes its workers with it, and
a killed `sftplan run` takes its launcher; a full disk or a lost peer is one line and status "failed".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.planfile import read_plan
from advisor.yamlio import atomic_write_text
from executor import oom_guard


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _stamp(datetime.now(timezone.utc))


def default_run_dir(plan_path: Path, plan) -> Path:
    return plan_path.parent / f"run-{plan.plan_sha256[:12]}"


def write_config(checked, plan_path: Path, run_dir: Path, *, stage: bool = True) -> dict[str, Path]:
    """Copy the plan and write config/ (training args, DeepSpeed/FSDP JSON, inputs, launch scripts).

    ``checked``: the preflight's CheckedPlan. training_args.json holds the kwargs train.py would pass
    on the accelerators visible here; train.py rewrites it with what it really passes (bf16 is decided
    on the node, where the device is).
    """
    from executor import names
    from executor.integrity import stage_data
    from executor.launch import launch_files
    from executor.preflight import visible_accelerators
    from executor.translate import deepspeed_config, fsdp_config, training_arguments

    plan = checked.plan
    cfg = run_dir / names.CONFIG
    cfg.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str, where: Path = cfg) -> None:
        atomic_write_text(where / name, text)
        written[name] = where / name

    if not (run_dir / names.PLAN).is_file():
        shutil.copy2(plan_path, run_dir / names.PLAN)
    written[names.PLAN] = run_dir / names.PLAN
    ds, fsdp = deepspeed_config(plan), fsdp_config(plan)
    if ds is not None:
        put(names.DEEPSPEED, json.dumps(ds, indent=2) + "\n")
    if fsdp is not None:
        put(names.FSDP, json.dumps(fsdp, indent=2) + "\n")
    accelerator = bool(visible_accelerators()[0])
    args = training_arguments(plan, str(run_dir.resolve()), bf16=accelerator, accelerator=accelerator,
                              deepspeed_path=str((cfg / names.DEEPSPEED).resolve()) if ds else None)
    put(names.TRAINING_ARGS, json.dumps(args, indent=2) + "\n")
    model = plan.request.model_path or plan.request.model
    model_dir = Path(model).expanduser()
    try:
        data = stage_data(plan, plan_path, run_dir)  # the approved bytes, copied into RUN_DIR/data/
    except (UserError, OSError):
        if stage:
            raise
        # --dry-run checks no data (a login node may not hold it): name where a run stages it
        data = {"train": (run_dir / names.DATA / names.TRAIN_DATA).resolve(),
                "golden": (run_dir / names.DATA / names.GOLDEN_DATA).resolve()}
    inputs = {
        "plan_sha256": plan.plan_sha256,
        "model": str(model_dir.resolve()) if model_dir.is_dir() else model,
        "train": str(data["train"]),
        "golden": str(data["golden"]),
    }
    put(names.INPUTS, json.dumps(inputs, indent=2) + "\n")
    for name, text in launch_files(plan, run_dir.resolve()).items():
        put(name, text)
        (cfg / name).chmod(0o755)
    return written


def _write_run(run_dir: Path, **fields) -> dict:
    path = run_dir / "run.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    info.update(fields)
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")
    return info


NO_RECORD = "ended without a record (killed?)"


def _ended(status: str | None, *, signal_name: str | None = None, exit_code: int | None = None,
           launcher_exit_code: int | None = None, step: int | None = None, error: str | None = None) -> str:
    """One line saying how an attempt ended, for its entry in run.json's attempts."""
    at = f" at step {step}" if isinstance(step, int) else ""
    code = f"exit code {exit_code}" if exit_code is not None else "exit code unknown"
    if status == "finished":
        gate = ", no epoch passed the eval gate" if exit_code == GATE_FAILED_EXIT_CODE else ""
        return f"finished ({code}{gate})"
    if status == "stopped":
        by = signal_name or "RUN_DIR/STOP at the epoch boundary"
        return f"stopped by {by}{at} ({code})"
    if status == "oom":
        return f"out of memory{at} ({code})" + (f": {error}" if error else "")
    if status == "failed":
        launcher = (f", launcher exit code {launcher_exit_code}" if launcher_exit_code is not None
                    and launcher_exit_code != exit_code else "")
        why = f" after {signal_name}" if signal_name else ""
        return f"failed{why}{at} ({code}{launcher}" + (f"): {error}" if error else ")")
    return str(status or "unknown")


def _last_sign_of_life(run_dir: Path) -> str | None:
    seen = [f.stat().st_mtime for f in (run_dir / "metrics.jsonl", run_dir / "log.txt") if f.is_file()]
    return _stamp(datetime.fromtimestamp(max(seen), timezone.utc)) if seen else None


def _attempts(run_dir: Path, previous: dict) -> list[dict]:
    """Launch attempts so far plus a new one; each ended one says how it ended (``status``, ``signal``,
    ``exit_code``, ``launcher_exit_code``, ``ended``: one line). An attempt killed without a finish time (SIGKILL,
    power loss) is closed at its last sign of life (latest write to metrics.jsonl or log.txt), so the report's
    elapsed hours leave the downtime before a resume out; one that run.json still shows ``running`` (its
    process is gone: the caller holds the run lock, and preflight refused a live pid) is marked
    ``status: "unrecorded"``, ``ended: "ended without a record (killed?) ..."`` (see ``unrecorded_attempt``)."""
    attempts = [dict(a) for a in previous.get("attempts", []) if isinstance(a, dict)]
    if not attempts and previous.get("started_at"):  # a run.json from before attempts were recorded
        attempts = [{"started_at": previous["started_at"], "finished_at": previous.get("finished_at")}]
    if attempts:
        last = attempts[-1]
        if not last.get("finished_at"):
            last["finished_at"] = _last_sign_of_life(run_dir) or last["started_at"]
        if previous.get("status") == "running" and not last.get("ended"):
            # the top-level signal/exit_code of a run.json left at "running" are an earlier attempt's: not copied
            last.update(status="unrecorded", signal=None, exit_code=None,
                        ended=f"{NO_RECORD}: run.json still said running; last sign of life {last['finished_at']}")
        elif previous.get("status") and previous["status"] != "running" and not last.get("ended"):
            # a run.json from before attempts recorded their ends: the top-level fields are the last attempt's
            was = Launched()
            was.signal = previous.get("signal") if previous.get("signal") in ("SIGINT", "SIGTERM", "SIGHUP") else None
            code = exit_code_of(previous["status"], was)
            launcher = previous.get("launcher_exit_code", previous.get("exit_code"))  # exit_code was the launcher's
            last.update(status=previous["status"], signal=was.signal, exit_code=code, launcher_exit_code=launcher,
                        ended=_ended(previous["status"], signal_name=was.signal, exit_code=code,
                                     launcher_exit_code=launcher, error=previous.get("error")))
    return attempts + [{"started_at": _now(), "finished_at": None, "status": "running"}]


def unrecorded_attempt(attempts: list[dict]) -> dict | None:
    """The attempt before the new one (the last of ``attempts``) when it ended without a record, else None."""
    if len(attempts) > 1 and attempts[-2].get("status") == "unrecorded":
        return attempts[-2]
    return None


def _close_attempt(run_dir: Path, **outcome) -> list[dict]:
    """The attempts with the running one (the last) closed now and ``outcome`` (status, signal, exit_code,
    launcher_exit_code, ended) recorded on it."""
    info = json.loads((run_dir / "run.json").read_text())
    attempts = [a for a in info.get("attempts", []) if isinstance(a, dict)]
    if attempts and not attempts[-1].get("finished_at"):
        attempts[-1]["finished_at"] = _now()
        attempts[-1].update(outcome)
    return attempts


def _versions() -> dict[str, str]:
    """The training packages' versions (for `sftplan calibrate`: a factor holds for the software it was fit on)."""
    from advisor.calibration import installed_versions

    return installed_versions()


def _device() -> str:
    from executor.preflight import visible_accelerators

    return "cuda" if visible_accelerators()[0] else "cpu"


LAUNCHER_GRACE_S = float(os.environ.get("SFTPLAN_LAUNCHER_GRACE_S", "30"))


def _watch_launcher(proc, out: "Launched") -> None:
    """A launcher whose workers have all ended but which lives on (torchrun's exit barrier waits up to 300 s
    for the agent of a node that is gone) is ended after LAUNCHER_GRACE_S: the run's outcome is the workers'."""
    from executor.lifecycle import descendants, is_worker, signal_tree

    seen, gone_since = False, None
    while proc.poll() is None:
        alive = [p for p in descendants(proc.pid) if is_worker(p)]
        if alive:
            seen, gone_since = True, None
        elif seen:
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since > LAUNCHER_GRACE_S:
                out.launcher_ended = (f"the launcher outlived its workers by {LAUNCHER_GRACE_S:.0f} s (waiting for a "
                                      "peer node that is gone?): ended it")
                signal_tree(proc.pid, signal.SIGTERM)
                try:  # torchrun in its exit barrier does not act on SIGTERM; its workers are done, so SIGKILL is safe
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    signal_tree(proc.pid, signal.SIGKILL)
                return
        time.sleep(1.0)


class Launched:
    """How a launcher ended: exit code, the stop signal ``sftplan run`` received (if any), the last one-line
    error a worker printed (``sftplan: ...``), and whether the log could not be written (disk full)."""

    def __init__(self):
        self.rc: int | None = None
        self.signal: str | None = None
        self.error: str | None = None
        self.log_lost: str | None = None
        self.orphans_killed: list[int] = []
        self.launcher_ended: str | None = None


def launch(argv: list[str], run_dir: Path, *, echo=True, lock=None, log_path: Path | None = None,
           record=None) -> Launched:
    """Start the launcher, tee its output to the log; SIGINT/SIGTERM/SIGHUP stop the workers at a safe point.

    The launcher runs in its own session and gets SIGTERM if this process dies (executor/lifecycle.py);
    this process is a child subreaper, so workers a killed launcher leaves behind are reaped here. The
    run lock's descriptor is passed to the launcher: the folder stays locked while it lives."""
    from executor.launch import project_root
    from executor.lifecycle import STOP_GRACE_S, Stopper, become_subreaper, die_with_parent, reap_orphans

    log_path = log_path or run_dir / "log.txt"
    record = record or (lambda **f: _write_run(run_dir, **f))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(project_root()) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    env["SFTPLAN_RUNNER_PID"] = str(os.getpid())
    out = Launched()
    become_subreaper()
    log = open(log_path, "a", encoding="utf-8")

    def write_log(text: str) -> None:
        nonlocal log
        if log is None:
            return
        try:
            log.write(text)
            log.flush()
        except OSError as exc:  # a full disk: keep the run going, keep echoing, say so once
            out.log_lost = f"log {log_path} not written from here on ({exc.strerror or exc})"
            sys.stderr.write(f"sftplan: {out.log_lost}\n")
            try:
                log.close()
            except OSError:
                pass
            log = None

    write_log(f"\n=== {_now()} {' '.join(argv)}\n")
    proc = subprocess.Popen(argv, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, start_new_session=True, preexec_fn=die_with_parent,
                            pass_fds=(lock.fd,) if lock is not None and lock.fd is not None else ())
    try:
        record(pid=proc.pid, pgid=proc.pid, runner_pid=os.getpid(), node=socket.gethostname())
    except OSError:
        pass
    say = (lambda m: (sys.stderr.write(m + "\n"), sys.stderr.flush())) if echo else (lambda m: None)
    watcher = threading.Thread(target=_watch_launcher, args=(proc, out), daemon=True)
    watcher.start()
    with Stopper(proc.pid, say=lambda m: (say(m), write_log(m + "\n"))) as stopper:
        for line in proc.stdout:
            write_log(line)
            if line.startswith("sftplan: "):
                out.error = line[len("sftplan: "):].strip()
            if echo:
                try:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                except OSError:  # a closed terminal (SIGHUP): the log and run.json still record the run
                    echo = False
        out.rc = proc.wait()
        out.orphans_killed = reap_orphans(STOP_GRACE_S)
        out.signal = stopper.received
    if log is not None:
        try:
            log.close()
        except OSError:
            pass
    return out


def run(plan_path: str | Path, out: str | Path | None = None, *, dry_run: bool = False, allow_mismatch: bool = False,
        echo: bool = True) -> int:
    """The whole `sftplan run`. Returns the exit code (0 finished or stopped cleanly, 1 training failed, 3 out of
    memory, 4 finished with no epoch through the eval gate, 128 + the signal number when SIGTERM/SIGHUP/SIGINT
    stopped it at a safe point)."""
    from executor.preflight import (
        check_plan, check_run_dir, check_run_plan_copy, require_train_packages, run_preflight,
    )

    plan_path = Path(plan_path)
    if not plan_path.is_file():
        raise UserError(f"{plan_path}: no such plan file")
    try:
        checked = check_plan(read_plan(plan_path))  # the one place a plan is refused
    except UserError as exc:
        if exc.names_file or str(exc).startswith(str(plan_path)):
            raise
        raise UserError(f"{plan_path}: {exc}") from None
    plan = checked.plan
    run_dir = Path(out) if out else default_run_dir(plan_path, plan)
    if run_dir.resolve() == plan_path.resolve().parent:  # it would hold the plan's copy beside the plan itself
        raise UserError(f"{run_dir}: is the plan's own folder; a run writes config/, data/ and its plan.yaml into "
                        f"its folder: choose another output folder (the default is {default_run_dir(plan_path, plan)})")
    if dry_run:  # writes the files and prints the command anywhere: disk, devices and data are run-time checks
        notes = check_run_dir(run_dir, plan) + ["dry run: disk, device and dataset checks are left to the run"]
        check_run_plan_copy(run_dir, plan)
    else:
        notes = run_preflight(plan_path, checked, run_dir, allow_mismatch=allow_mismatch)
    if not dry_run and plan.recommended.num_nodes == 1:  # this command launches training here
        require_train_packages(plan.recommended.strategy, method=plan.method)
    run_dir.mkdir(parents=True, exist_ok=True)
    from executor.lifecycle import RunLock

    lock = RunLock(run_dir).acquire()  # held until this process (and the launcher it starts) ends
    try:
        return _run_locked(checked, plan_path, run_dir, notes, lock, dry_run=dry_run, allow_mismatch=allow_mismatch,
                           echo=echo)
    finally:
        lock.release()


def _run_locked(checked, plan_path: Path, run_dir: Path, notes: list[str], lock, *, dry_run: bool, allow_mismatch: bool,
                echo: bool) -> int:
    from executor.launch import run_port, single_node_argv

    plan = checked.plan
    written = write_config(checked, plan_path, run_dir, stage=not dry_run)
    multi = plan.recommended.num_nodes > 1
    say = print if echo else (lambda *a, **k: None)
    for note in notes:
        say(f"preflight: {note}")
    for name, path in written.items():
        say(f"wrote {path}")
    launch_line = show_dry_run(plan, run_dir, written, say) if dry_run else None
    if multi:
        say(f"{plan.recommended.num_nodes} nodes: submit `sbatch {run_dir / 'config' / 'sbatch.sh'}`, or run "
            f"config/node-<i>.sh on node i with MASTER_ADDR set to node 0's address; this command does not start "
            f"other machines. {run_dir} must be on storage shared by every node (each node checks it, and its own "
            f"devices, before training); node 0 writes run.json, log.txt and report.md here, node i in node-<i>/")
    if dry_run:
        say(launch_line)
    if multi or dry_run:
        return 0
    # the launcher this command starts: config/launch.sh's command, with $MASTER_PORT or a free port (DeepSpeed)
    argv = single_node_argv(plan, run_dir.resolve(), master_port=run_port())
    (run_dir / "STOP").unlink(missing_ok=True)  # a STOP left from an earlier stop would end this run at once
    previous = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    attempts = _attempts(run_dir, previous)
    lost = unrecorded_attempt(attempts)
    if lost:  # e.g. SIGKILL of `sftplan run`, power loss: say it once, and keep it in run.json (notes, attempts)
        line = (f"the previous attempt (started {lost['started_at']}) {NO_RECORD}: last sign of life "
                f"{lost['finished_at']}; recorded in {run_dir / 'run.json'} attempts")
        say(f"sftplan: {line}")
        notes = notes + [line]
    # a new attempt: the top-level signal/exit_code/error of the last one would be read as this one's
    _write_run(run_dir, plan_sha256=plan.plan_sha256, status="running", started_at=previous.get("started_at") or _now(),
               restarted_at=_now() if previous else None, finished_at=None, allow_mismatch=allow_mismatch, notes=notes,
               launch=argv, device=_device(), strategy=plan.recommended.strategy, signal=None, exit_code=None,
               launcher_exit_code=None, error=None, attempts=attempts, versions=_versions())
    if lost:
        try:
            with open(run_dir / "log.txt", "a", encoding="utf-8") as fh:
                fh.write(f"{_now()} sftplan: {line}\n")
        except OSError:
            pass
    (run_dir / "train_result.json").unlink(missing_ok=True)
    (run_dir / oom_guard.OOM_FILE).unlink(missing_ok=True)
    done = launch(argv, run_dir, echo=echo, lock=lock)
    return finish(plan, run_dir, done, notes, say=say)


DRY_RUN_SHOWN = ("training_args.json", "deepspeed.json", "fsdp.json")


def show_dry_run(plan, run_dir: Path, written: dict[str, Path], say) -> str:
    """Print what --dry-run wrote (the configs, then the launch scripts); returns the line naming the launch.

    One node: launch.sh, and its command exactly as the script has it. Several nodes: node-0.sh in full, each other
    node's script as its difference from node 0's when that is only the node's rank, sbatch.sh and launch.sh."""
    from executor.launch import RDZV_PORT, launch_command, submit_command, uses_master_port

    def show(name: str, text: str | None = None) -> None:
        if name in written:
            say(f"--- {written[name]}\n{(written[name].read_text() if text is None else text).rstrip()}")

    for name in DRY_RUN_SHOWN:
        show(name)
    nodes = plan.recommended.num_nodes
    if nodes == 1:
        show("launch.sh")
        port = f"; MASTER_PORT: {RDZV_PORT} unless set" if uses_master_port(plan) else ""
        return f"dry run: nothing trained. Launch: {launch_command(plan, run_dir.resolve())} (config/launch.sh{port})"
    first = written["node-0.sh"].read_text()
    show("node-0.sh", first)
    for i in range(1, nodes):
        name = f"node-{i}.sh"
        text = written[name].read_text()
        if text == _as_node(first, 0, i, nodes):
            say(f"--- {written[name]}: node-0.sh with --node-rank {i} (and the comment: node {i} of {nodes})")
        else:
            show(name, text)
    show("sbatch.sh")
    show("launch.sh")
    return (f"dry run: nothing trained. Launch: {submit_command(run_dir.resolve())} (config/launch.sh), or on each "
            f"node i: MASTER_ADDR=<node 0's address> bash {run_dir.resolve() / 'config'}/node-<i>.sh")


def _as_node(script: str, rank: int, other: int, nodes: int) -> str:
    """Node ``rank``'s script rewritten for node ``other``: the comment and --node-rank."""
    return script.replace(f"# node {rank} of {nodes}:", f"# node {other} of {nodes}:").replace(
        f" --node-rank {rank} ", f" --node-rank {other} ")


def _read_result(run_dir: Path) -> dict:
    try:
        result = json.loads((run_dir / "train_result.json").read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def status_of(done: "Launched", result: dict) -> str:
    """finished: the launcher exited 0 with a result that did not stop early; stopped: a result saying it
    stopped (STOP, or a signal that reached a safe point); failed: anything else."""
    ok = done.rc == 0 or bool(done.launcher_ended)  # workers done, launcher ended by us: the workers' outcome
    if result.get("stopped") and (ok or done.signal):
        return "stopped"
    if ok and result and not result.get("failed"):  # "failed": a non-finite loss stopped the trainer (train.py)
        return "finished"
    return "failed"


def finish(plan, run_dir: Path, done: "Launched", notes: list[str], *, say, record=None, report_dir: Path | None = None,
           result_dir: Path | None = None) -> int:
    """Record how the launch ended (run.json) and write the report, even on a full disk; the exit code."""
    record = record or (lambda **f: _write_run(run_dir, **f))
    result = _read_result(result_dir or run_dir)
    status = status_of(done, result)
    oom = oom_guard.read_oom(result_dir or run_dir)  # a rank ran out of memory (executor/oom_guard.py): exit 3
    if oom:
        status = "oom"
    extra = _signal_notes(list(result.get("notes", [])), done.signal)
    if done.signal:
        extra.append(f"{done.signal} received: " + ("the workers stopped at a safe point" if status == "stopped"
                                                    else "the workers did not reach a safe point"))
    if done.orphans_killed:
        extra.append(f"killed {len(done.orphans_killed)} worker(s) left running after the launcher ended")
    if done.launcher_ended:
        extra.append(done.launcher_ended)
    if done.log_lost:
        extra.append(done.log_lost)
    error = (done.error or result.get("failed")) if status == "failed" else (
        oom.get("message", "out of memory") if oom else None)
    if status == "failed" and not error:
        error = (f"the launcher ended with exit code {done.rc}" if done.rc else "training ended without a result")
    code = exit_code_of(status, done)
    gate_failed = _no_epoch_passed(run_dir) if status == "finished" else ""
    if gate_failed:  # trained to the end, and nothing may be promoted: a script chaining run and promote stops here
        extra.append(gate_failed)
        code = GATE_FAILED_EXIT_CODE
    # run.json's exit_code: 128 + the signal when a stop signal stopped it (what `sftplan run` exits with), else the
    # launcher's (also in launcher_exit_code); an attempt's exit_code is always what `sftplan run` exited with
    recorded = code if code > 128 else done.rc
    step = result.get("global_step") if isinstance(result.get("global_step"), int) else None
    outcome = dict(status=status, signal=done.signal, exit_code=code, launcher_exit_code=done.rc,
                   ended=_ended(status, signal_name=done.signal, exit_code=code, launcher_exit_code=done.rc,
                                step=step, error=error))
    problems = []
    try:
        record(status=status, finished_at=_now(), exit_code=recorded, launcher_exit_code=done.rc, pid=None,
               signal=done.signal, error=error, notes=notes + extra, attempts=_close_attempt(run_dir, **outcome))
    except OSError as exc:
        problems.append(f"run.json not updated ({exc.strerror or exc})")
    from executor.report import write_report

    try:
        write_report(report_dir or run_dir, plan)
    except OSError as exc:
        problems.append(f"report not written ({exc.strerror or exc})")
    where = report_dir or run_dir
    say(f"run {status}: {where} (gate {run_dir / 'gate.json'}, report {where / 'report.md'}, log {where / 'log.txt'})"
        + (f": {error}" if error else "") + (f": {gate_failed}" if gate_failed else ""))
    for p in problems:
        say(f"sftplan: {p}")
    if oom:
        print(f"sftplan: {error}", file=sys.stderr, flush=True)
    return code


GATE_FAILED_EXIT_CODE = 4  # the run finished, and no epoch passed the eval gate


def _no_epoch_passed(run_dir: Path) -> str:
    """'' when an epoch passed the eval gate (or none was scored), else the one line saying none passed and why."""
    from executor.evalgate import best_passing_epoch, gate_summary, read_gate

    try:
        gate = read_gate(run_dir)
        if not gate.get("epochs") or best_passing_epoch(run_dir) is not None:
            return ""
    except UserError as exc:
        return f"the eval gate's record cannot be read: {exc}"
    return f"no epoch passed the eval gate, nothing to promote ({gate_summary(gate)})"


def exit_code_of(status: str, done: "Launched") -> int:
    """What `sftplan run` exits with: 3 out of memory, 1 failed, 128 + the signal when a stop signal stopped it,
    else 0."""
    if status == "oom":
        return oom_guard.OOM_EXIT_CODE
    if status == "failed":
        return 1
    if done.signal:
        return 128 + int(getattr(signal, done.signal))
    return 0


def _signal_notes(notes: list[str], received: str | None) -> list[str]:
    """The workers' "stopped by SIGTERM at step N" when `sftplan run` received another stop signal: Stopper
    forwards every stop signal to the workers as SIGTERM, so the note says which one `sftplan run` received."""
    if not received or received == "SIGTERM":
        return notes
    out = []
    for n in notes:
        if isinstance(n, str) and n.startswith("stopped by SIGTERM at step ") and n[27:].isdigit():
            n = f"{n}: sftplan run received {received} and forwarded it to each worker as SIGTERM"
        out.append(n)
    return out
