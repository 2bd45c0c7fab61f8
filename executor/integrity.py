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
