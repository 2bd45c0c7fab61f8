"""The run folder's file names, in one place, and the ``COMPLETE`` marker of a checkpoint. Pure: no torch.

Every module that reads or writes a run folder takes its names from here (docs/CONTRACTS.md describes
what each file holds). A checkpoint is complete when its ``COMPLETE`` file exists and every file it
lists has the sha256 it records: ``write_complete`` hashes every file of the checkpoint folder (written
last, atomically), ``check_complete`` re-hashes them and names the first file that differs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from advisor.modelfiles import sha256_file  # noqa: F401 - the one file hasher, re-exported for the executor

PLAN = "plan.yaml"
RUN_JSON = "run.json"
CONFIG = "config"                    # RUN_DIR/config/...
TRAINING_ARGS = "training_args.json"
DEEPSPEED = "deepspeed.json"
FSDP = "fsdp.json"
INPUTS = "inputs.json"
LAUNCH = "launch.sh"
SBATCH = "sbatch.sh"
DATA = "data"                        # RUN_DIR/data/: the approved training and golden bytes, copied at preflight
TRAIN_DATA = "train.jsonl"
GOLDEN_DATA = "golden.jsonl"
SHARDS = "shards"
RESULT = "train_result.json"
METRICS = "metrics.jsonl"
GATE = "gate.json"
BASELINE = "baseline.json"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
STOP = "STOP"
LOG = "log.txt"
PROMOTED = "promoted"
RUN_LOCK = "run.lock"                # flock'ed for the life of a run (executor/lifecycle.py)
NODE_PREFIX = "node-"                # multi-node: RUN_DIR/node-<i>/ holds node i's run.json, log.txt, report.md
NODES = "nodes"                      # multi-node: RUN_DIR/nodes/node-<i>.json check-ins (shared-storage check)
SHARED_MARKER = "shared-storage.marker"  # RUN_DIR/config/: written by the submitter, checked on every node
CHECKPOINT_PREFIX = "checkpoint-"
DAMAGED_PREFIX = "damaged-"          # damaged-checkpoint-<step>: failed its COMPLETE hashes, set aside, never resumed
COMPLETE = "COMPLETE"


def is_run_entry(name: str) -> bool:
    """A name a run writes into its folder (the names above, its memory/ reports, deploy.json), or a hidden temp /
    lock file: what a folder without a run's identity may hold and still be taken as a run folder."""
    from executor.deploy import DEPLOY_FILE
    from executor.oom_guard import MEMORY_DIR

    own = {PLAN, RUN_JSON, CONFIG, DATA, SHARDS, RESULT, METRICS, GATE, BASELINE, REPORT_MD, REPORT_JSON, STOP, LOG,
           PROMOTED, RUN_LOCK, NODES, MEMORY_DIR, DEPLOY_FILE}
    return name in own or name.startswith((".", CHECKPOINT_PREFIX, DAMAGED_PREFIX, NODE_PREFIX))


def node_script(i: int) -> str:
    return f"node-{i}.sh"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(path: Path) -> int:
    """The step of a ``checkpoint-<step>`` folder, -1 for any other name."""
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX):
        return -1
    tail = name[len(CHECKPOINT_PREFIX):]
    return int(tail) if tail.isdigit() else -1


def checkpoints(run_dir: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` folder of the run, oldest step first (complete or not)."""
    found = [p for p in Path(run_dir).glob(CHECKPOINT_PREFIX + "*") if p.is_dir() and checkpoint_step(p) >= 0]
    return sorted(found, key=checkpoint_step)


# --------------------------------------------------------------------------- COMPLETE




def _in_progress(name: str) -> bool:
    """Our own half-written files (``.<name>.tmp``, renamed into place when whole): never part of a checkpoint."""
    return name.startswith(".") and name.endswith(".tmp")


def _files(ckpt: Path, *, dotfiles: bool = True) -> list[Path]:
    """Every file of the checkpoint but COMPLETE and our in-progress files. Dot files are files like any other:
    DCP's ``.metadata`` (FSDP's sharded state, fsdp-tp's tp_state/) is what a resume reads first. ``dotfiles=False``
    is how markers written before they were hashed (no ``hashes_dotfiles``) are checked."""
    return sorted((p for p in ckpt.rglob("*") if p.is_file() and p.name != COMPLETE and not _in_progress(p.name)
                   and (dotfiles or not p.name.startswith("."))),
                  key=lambda p: p.relative_to(ckpt).as_posix())


def write_complete(ckpt: Path, *, step: int, epoch: float | None, plan_sha256: str | None = None) -> dict:
    """Hash every file of the checkpoint and write ``COMPLETE`` (last, atomically), with the step and the plan
    whose run wrote it (check_complete holds a resume or a promotion to both). Returns its content."""
    ckpt = Path(ckpt)
    files = {p.relative_to(ckpt).as_posix(): sha256_file(p) for p in _files(ckpt)}
    marker = {"step": step, "epoch": epoch, "plan_sha256": plan_sha256, "files": files, "hashes_dotfiles": True}
    tmp = ckpt / f".{COMPLETE}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(marker, indent=1) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, ckpt / COMPLETE)
    return marker


def check_complete(ckpt: Path, plan_sha256: str | None = None) -> str:
    """'' when the checkpoint is complete and every file verifies, else the one-line reason naming the file. Also
    its step: a ``checkpoint-<step>`` folder's COMPLETE records that step, and the hashed trainer_state.json
    (where listed) the same global step, so a renamed folder or an edited step is caught. With ``plan_sha256``
    (resume, promote, evaluate): COMPLETE must record that plan, the one whose run wrote the checkpoint."""
    ckpt = Path(ckpt)
    marker_path = ckpt / COMPLETE
    if not marker_path.is_file():
        return f"{ckpt.name} is incomplete (no {COMPLETE} marker: interrupted while being written)"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        files = marker["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        return f"{marker_path}: unreadable or without file hashes; the checkpoint cannot be verified"
    for rel, want in sorted(files.items()):
        path = ckpt / rel
        if not path.is_file():
            return f"{path}: missing (listed in {COMPLETE})"
        try:
            got = sha256_file(path)
        except OSError as exc:
            return f"{path}: unreadable ({exc.__class__.__name__})"
        if got != want:
            return f"{path}: damaged (sha256 {got[:12]}, {COMPLETE} recorded {str(want)[:12]})"
    extra = [p.relative_to(ckpt).as_posix() for p in _files(ckpt, dotfiles=bool(marker.get("hashes_dotfiles")))
             if p.relative_to(ckpt).as_posix() not in files]
    if extra:
        return f"{ckpt / extra[0]}: not listed in {COMPLETE} (added after the checkpoint was completed)"
    return _step_and_plan_reason(ckpt, marker, plan_sha256)


def _step_and_plan_reason(ckpt: Path, marker: dict, plan_sha256: str | None) -> str:
    """Why the verified files are not this checkpoint of this plan's run: '' when they are."""
    step = marker.get("step")
    named = checkpoint_step(ckpt)
    if named >= 0 and (type(step) is not int or step != named):
        return f"{ckpt / COMPLETE}: records step {step!r}, but the folder is {ckpt.name} (renamed or edited)"
    if "trainer_state.json" in marker["files"]:  # hashed above: Trainer's own record of the step
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and "global_step" in state and state.get("global_step") != step:
            return (f"{ckpt / COMPLETE}: records step {step!r}, but its trainer_state.json is at step "
                    f"{state.get('global_step')!r} (edited)")
    if plan_sha256 is not None and marker.get("plan_sha256") != plan_sha256:
        got = marker.get("plan_sha256")
        who = f"plan {str(got)[:12]}'s run" if got else "a run that did not record its plan"
        return f"{ckpt.name} was written by {who}, not by this plan's ({plan_sha256[:12]}): not this run's checkpoint"
    return ""


def has_marker(ckpt: Path) -> bool:
    return (Path(ckpt) / COMPLETE).is_file()
