"""`sftplan run PLAN`: preflight -> config files -> launcher subprocess -> run.json status -> report.

Nothing heavy is imported here: preflight is pure, the training itself runs in the launcher's
processes (executor/train.py). ``--dry-run`` writes and prints the config files and the launch
command and trains nothing. A multi-node plan writes one script per node and an sbatch script and
says how to submit them (this command does not start other machines).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.planfile import read_plan
from advisor.yamlio import atomic_write_text


def _stamp(when: datetime) -> str:
    return when.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _stamp(datetime.now(timezone.utc))


def default_run_dir(plan_path: Path, plan) -> Path:
    return plan_path.parent / f"run-{plan.plan_sha256[:12]}"


def write_config(checked, plan_path: Path, run_dir: Path) -> dict[str, Path]:
    """Copy the plan and write config/ (training args, DeepSpeed/FSDP JSON, inputs, launch scripts).

    ``checked``: the preflight's CheckedPlan. training_args.json holds the kwargs train.py would pass
    on the accelerators visible here; train.py rewrites it with what it really passes (bf16 is decided
    on the node, where the device is).
    """
    from executor import names
    from executor.launch import launch_files
    from executor.preflight import golden_file, resolve_data_path, visible_accelerators
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
    inputs = {
        "plan_sha256": plan.plan_sha256,
        "model": str(model_dir.resolve()) if model_dir.is_dir() else model,
        "train": str(resolve_data_path(plan.request.dataset.file.path, plan_path).resolve()),
        "golden": str(resolve_data_path(golden_file(plan).path, plan_path).resolve()),
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


def _attempts(run_dir: Path, previous: dict) -> list[dict]:
    """Launch attempts so far plus a new one. An attempt killed without a finish time (SIGKILL, power loss)
    is closed at its last sign of life (latest write to metrics.jsonl or log.txt), so the report's
    elapsed hours leave the downtime before a resume out."""
    attempts = [dict(a) for a in previous.get("attempts", []) if isinstance(a, dict)]
    if not attempts and previous.get("started_at"):  # a run.json from before attempts were recorded
        attempts = [{"started_at": previous["started_at"], "finished_at": previous.get("finished_at")}]
    if attempts and not attempts[-1].get("finished_at"):
        seen = [f.stat().st_mtime for f in (run_dir / "metrics.jsonl", run_dir / "log.txt") if f.is_file()]
        last = datetime.fromtimestamp(max(seen), timezone.utc) if seen else None
        attempts[-1]["finished_at"] = _stamp(last) if last else attempts[-1]["started_at"]
    return attempts + [{"started_at": _now(), "finished_at": None}]


def _close_attempt(run_dir: Path) -> list[dict]:
    info = json.loads((run_dir / "run.json").read_text())
    attempts = info.get("attempts", [])
    if attempts and not attempts[-1].get("finished_at"):
        attempts[-1]["finished_at"] = _now()
    return attempts


def _versions() -> dict[str, str]:
    """The training packages' versions (for `sftplan calibrate`: a factor holds for the software it was fit on)."""
    from advisor.calibration import installed_versions

    return installed_versions()


def _device() -> str:
    from executor.preflight import visible_accelerators

    return "cuda" if visible_accelerators()[0] else "cpu"


def launch(argv: list[str], run_dir: Path, *, echo=True) -> int:
    """Start the launcher, tee its output to RUN_DIR/log.txt; Ctrl-C stops it cleanly (process group)."""
    from executor.launch import project_root

    env = dict(os.environ)
    env["PYTHONPATH"] = str(project_root()) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    with open(run_dir / "log.txt", "a", encoding="utf-8") as log:
        log.write(f"\n=== {_now()} {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=project_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        _write_run(run_dir, pid=proc.pid)
        try:
            for line in proc.stdout:
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise


def run(plan_path: str | Path, out: str | Path | None = None, *, dry_run: bool = False, allow_mismatch: bool = False,
        echo: bool = True) -> int:
    """The whole `sftplan run`. Returns the exit code (0 finished or stopped cleanly, 1 training failed)."""
    from executor.launch import single_node_argv
    from executor.preflight import check_plan, require_train_packages, run_preflight

    plan_path = Path(plan_path)
    if not plan_path.is_file():
        raise UserError(f"{plan_path}: no such plan file")
    checked = check_plan(read_plan(plan_path))  # the one place a plan is refused
    plan = checked.plan
    run_dir = Path(out) if out else default_run_dir(plan_path, plan)
    notes = run_preflight(plan_path, checked, run_dir, allow_mismatch=allow_mismatch)
    if not dry_run and plan.recommended.num_nodes == 1:  # this command launches training here
        require_train_packages(plan.recommended.strategy)
    run_dir.mkdir(parents=True, exist_ok=True)
    written = write_config(checked, plan_path, run_dir)
    multi = plan.recommended.num_nodes > 1
    argv = None if multi else single_node_argv(plan, run_dir.resolve())
    say = print if echo else (lambda *a, **k: None)
    for note in notes:
        say(f"preflight: {note}")
    for name, path in written.items():
        say(f"wrote {path}")
    if multi:
        say(f"{plan.recommended.num_nodes} nodes: submit `sbatch {run_dir / 'config' / 'sbatch.sh'}`, or run "
            f"config/node-<i>.sh on node i with MASTER_ADDR set; this command does not start other machines")
        return 0
    if dry_run:
        for name in ("training_args.json", "deepspeed.json", "fsdp.json", "launch.sh"):
            if name in written:
                say(f"--- {written[name]}\n{written[name].read_text().rstrip()}")
        say("dry run: nothing trained. Launch: " + " ".join(argv))
        return 0
    (run_dir / "STOP").unlink(missing_ok=True)  # a STOP left from an earlier stop would end this run at once
    previous = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    _write_run(run_dir, plan_sha256=plan.plan_sha256, status="running", started_at=previous.get("started_at") or _now(),
               restarted_at=_now() if previous else None, finished_at=None, allow_mismatch=allow_mismatch, notes=notes,
               launch=argv, device=_device(), strategy=plan.recommended.strategy,
               attempts=_attempts(run_dir, previous), versions=_versions())
    (run_dir / "train_result.json").unlink(missing_ok=True)
    try:
        rc = launch(argv, run_dir, echo=echo)
    except KeyboardInterrupt:
        _write_run(run_dir, status="stopped", finished_at=_now(), pid=None, attempts=_close_attempt(run_dir))
        raise
    result_path = run_dir / "train_result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    status = "failed" if rc != 0 or not result else ("stopped" if result.get("stopped") else "finished")
    _write_run(run_dir, status=status, finished_at=_now(), exit_code=rc, pid=None,
               notes=notes + result.get("notes", []), attempts=_close_attempt(run_dir))
    from executor.report import write_report

    write_report(run_dir, plan)
    say(f"run {status}: {run_dir} (gate {run_dir / 'gate.json'}, report {run_dir / 'report.md'}, log "
        f"{run_dir / 'log.txt'})")
    return 0 if status in ("finished", "stopped") else 1
