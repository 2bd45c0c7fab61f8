"""What every rank checks before it trains: the plan it reads is the approved one. Pure: no torch.

The trainer (executor/train.py) is started by `sftplan run` and equally by the node scripts a user
submits by hand (config/launch.sh, node-<i>.sh, sbatch.sh), so these checks run inside it, on every
rank of every node, not only in `sftplan run`'s preflight. Each failure is one ``UserError`` line.
"""

from __future__ import annotations

import json
from pathlib import Path

from advisor.errors import UserError
from executor import names


def read_json_file(path: Path, what: str) -> dict:
    """A JSON object from ``path``; one line naming the file when it is missing, unreadable or malformed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: unreadable {what} ({exc.__class__.__name__}); it is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: unreadable {what} (expected a JSON object); it is damaged")
    return data


def verify_run_plan(run_dir: Path):
    """(CheckedPlan, inputs) of the run folder: RUN_DIR/plan.yaml must verify (hash and approval) and be
    the plan this folder was configured for (config/inputs.json's plan_sha256)."""
    from advisor.planfile import read_plan
    from executor.preflight import check_plan

    path = run_dir / names.PLAN
    plan = read_plan(path)
    try:
        checked = check_plan(plan)
    except UserError as exc:
        raise UserError(f"{path}: {exc}; refusing to train on it") from None
    inputs = read_json_file(run_dir / names.CONFIG / names.INPUTS, "run inputs")
    if inputs.get("plan_sha256") != checked.sha256:
        raise UserError(f"{path} is plan {checked.sha256[:12]}, but this run folder was configured for plan "
                        f"{str(inputs.get('plan_sha256'))[:12]} ({names.CONFIG}/{names.INPUTS}); refusing to train")
    return checked, inputs


# --------------------------------------------------------------------------- data


def _data_files(plan) -> list[tuple[str, object, str, str]]:
    """(inputs key, DataFile, file name in RUN_DIR/data, what) for the training and golden files."""
    from executor.preflight import golden_file

    return [("train", plan.request.dataset.file, names.TRAIN_DATA, "dataset"),
            ("golden", golden_file(plan), names.GOLDEN_DATA, "golden set")]


def stage_data(plan, plan_path: Path, run_dir: Path) -> dict[str, Path]:
    """Copy the approved training and golden files into RUN_DIR/data/ (read-only) and check the copies' sha256
    against the plan: the run trains on those bytes whatever happens to the originals afterwards. A copy that
    already verifies (a resume) is kept. A copy, not a hard link: a link shares the original's inode, so an
    in-place overwrite of the original would reach it."""
    import os
    import shutil

    from executor.preflight import resolve_data_path

    out: dict[str, Path] = {}
    folder = run_dir / names.DATA
    folder.mkdir(parents=True, exist_ok=True)
    for key, df, name, what in _data_files(plan):
        if df is None:  # a plan made from counts (--examples) names no file: nothing to stage or train on
            raise UserError(f"the plan names no {what} file (planned from counts): re-plan with "
                            f"{'--dataset' if key == 'train' else '--golden'} FILE to run it")
        dst = folder / name
        if not (dst.is_file() and names.sha256_file(dst) == df.sha256):
            src = resolve_data_path(df.path, plan_path)
            tmp = folder / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            got = names.sha256_file(tmp)
            if got != df.sha256:
                tmp.unlink()
                raise UserError(f"{what} {src} changed while the run was starting (sha256 {got[:12]}, approved "
                                f"{df.sha256[:12]}); re-plan and re-approve")
            os.chmod(tmp, 0o444)
            os.replace(tmp, dst)
        out[key] = dst.resolve()
    return out


def verify_data(plan, inputs: dict) -> dict[str, Path]:
    """The trainer's check, on every rank: the files it is about to read hold the approved bytes."""
    out = {}
    for key, df, _, what in _data_files(plan):
        path = Path(inputs[key])
        try:
            got = names.sha256_file(path)
        except OSError as exc:
            raise UserError(f"{path}: cannot read the {what} ({exc.__class__.__name__})") from None
        if got != df.sha256:
            raise UserError(f"{path}: the {what} is not the approved bytes (sha256 {got[:12]}, approved "
                            f"{df.sha256[:12]}); refusing to train on it")
        out[key] = path
    return out


# --------------------------------------------------------------------------- checkpoints


def set_aside_damaged(run_dir: Path, plan_sha256: str | None = None) -> tuple[list[str], list[dict]]:
    """Rank 0, before a resume: verify every complete checkpoint (newest first) against its COMPLETE hashes, step
    and plan (names.check_complete: a checkpoint another plan's run wrote is never resumed); each one that fails
    is renamed ``damaged-checkpoint-<step>`` (``.2``, ``.3``... when an earlier one of that step is
    there: kept for inspection, never resumed from, out of Trainer's rotation) and named in a note. Returns (notes,
    [{"checkpoint", "reason", "set_aside_as"}])."""
    notes, damaged = [], []
    done = [p for p in names.checkpoints(run_dir) if names.has_marker(p)]
    for ckpt in reversed(done):
        why = names.check_complete(ckpt, plan_sha256)
        if not why:
            break  # the newest that verifies is where the run resumes; older ones are checked when promoted
        aside = damaged_name(ckpt)
        ckpt.rename(aside)
        damaged.append({"checkpoint": ckpt.name, "reason": why, "set_aside_as": aside.name})
    if damaged:
        left = [p for p in names.checkpoints(run_dir) if names.has_marker(p)]
        target = f"resuming from {left[-1].name}, the newest that verifies" if left else \
            "no complete checkpoint verifies: training from the base model"
        for d in damaged:
            notes.append(f"checkpoint {d['checkpoint']} is damaged: {d['reason']}; set aside as "
                         f"{d['set_aside_as']}; {target}")
    return notes, damaged


def damaged_name(ckpt: Path) -> Path:
    """Where a damaged checkpoint is set aside: ``damaged-checkpoint-<step>``, or, when an earlier set-aside of the
    same step is still there (kept for inspection, never overwritten), ``damaged-checkpoint-<step>.2``, ``.3``..."""
    first = ckpt.with_name(names.DAMAGED_PREFIX + ckpt.name)
    aside, n = first, 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = first.with_name(f"{first.name}.{n}")
    return aside


# --------------------------------------------------------------------------- base model


def verify_model(plan, inputs: dict) -> tuple[str, str | None, list[str]]:
    """(what from_pretrained loads, hub revision or None, notes) after checking the base model on this rank:
    a local directory must hold exactly the files the approval recorded (sha256 each); a hub id is loaded at its
    recorded revision and said to be unverified."""
    from advisor.modelfiles import check_model_dir

    record = plan.request.model_files
    target = str(inputs["model"])
    folder = Path(target).expanduser()
    if folder.is_dir():
        if record is None or record.source != "local":
            raise UserError(f"the approved plan records no sha256 of the base model's files ({folder}): it was "
                            "planned before they were recorded; re-plan and re-approve")
        why = check_model_dir(record, folder)
        if why:
            raise UserError(f"base model {why}; refusing to train on a model that is not the approved one")
        return str(folder), None, [f"base model {folder}: {len(record.sha256)} files verified by sha256"]
    repo, _, pinned = target.partition("@")
    revision = (record.revision if record is not None else None) or pinned or None
    return repo, revision, [f"base model {repo} is a hub id (revision {revision or 'unpinned'}): its files are "
                            "not verified"]


# --------------------------------------------------------------------------- baseline


def _baseline_sha256(plan_sha256: str, score: dict) -> str:
    import hashlib

    text = json.dumps({"plan_sha256": plan_sha256, "score": score}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_baseline(run_dir: Path, plan, score: dict) -> dict:
    """Rank 0, once, on the base model: RUN_DIR/baseline.json {"plan_sha256", "model_files", "score", "sha256"}."""
    from advisor.yamlio import atomic_write_text

    score = {k: float(score[k]) for k in ("loss", "exact_match", "contains")}
    record = plan.request.model_files
    data = {"plan_sha256": plan.plan_sha256, "model_files": record.to_dict() if record else None,
            "score": score, "sha256": _baseline_sha256(plan.plan_sha256, score)}
    atomic_write_text(run_dir / names.BASELINE, json.dumps(data, indent=2) + "\n")
    return data


def read_baseline(run_dir: Path, plan) -> dict | None:
    """The base model's golden score recorded in baseline.json, None when there is none; one line naming the file
    when it is damaged or belongs to another plan."""
    path = run_dir / names.BASELINE
    if not path.exists():
        return None
    data = read_json_file(path, "golden baseline")
    score = data.get("score")
    try:
        ok = (isinstance(score, dict) and data.get("sha256") == _baseline_sha256(str(data.get("plan_sha256")), score))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{path}: damaged (its content does not match its sha256); the base model's golden baseline "
                        "cannot be trusted: start a new run folder")
    if data.get("plan_sha256") != plan.plan_sha256:
        raise UserError(f"{path}: the baseline of plan {str(data.get('plan_sha256'))[:12]}, not of this plan "
                        f"{plan.plan_sha256[:12]}")
    return score


def check_run_files(run_dir: Path, plan) -> list[str]:
    """Preflight of a run folder being resumed: gate.json and baseline.json readable, and a baseline recorded on
    the base model whenever a complete checkpoint exists (a resumed model can never be its own baseline)."""
    from executor.evalgate import read_gate

    if not run_dir.is_dir():
        return []
    read_gate(run_dir)  # a malformed gate.json is one line naming it
    baseline = read_baseline(run_dir, plan)
    done = [p.name for p in names.checkpoints(run_dir) if names.has_marker(p)]
    if done and baseline is None:
        raise UserError(f"{run_dir / names.BASELINE}: missing, and the run folder holds complete checkpoints "
                        f"({', '.join(done[-2:])}): the golden baseline belongs to the base model and cannot be "
                        "re-scored on a resumed checkpoint; start a new run folder")
    return []
