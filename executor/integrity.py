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
