"""`sftplan tui [request.yaml | plan.yaml | RUN_DIR]` (and `sftplan` with no arguments).

Registering imports nothing from textual: advisor.cli registers this module for every command, so
textual is imported only inside the handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from advisor.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tui", help="interactive planning session: inputs, live plan, save, approve, run")
    p.add_argument("target", nargs="?", metavar="request.yaml | plan.yaml | RUN_DIR",
                   help="start from a request or a plan file, or attach to a run folder (default: a sample scenario)")
    p.add_argument("--calibration", metavar="YAML", default=None,
                   help="plan with correction factors from finished runs (`sftplan calibrate`; default: $SFTPLAN_CALIBRATION)")
    p.set_defaults(func=cmd_tui)


def load_calibration(path: str | None):
    """--calibration FILE (or $SFTPLAN_CALIBRATION): advisor.calibration.Calibration, or None; a bad file is
    a UserError (one line, exit 2) before the screen opens."""
    import os

    path = path or os.environ.get("SFTPLAN_CALIBRATION")
    if not path:
        return None
    from advisor.calibration import load

    return load(path)


def app_kwargs(target: str | None) -> dict:
    """What the app opens with: a request, a plan (and its path) or a run folder to attach to."""
    if not target:
        return {}
    path = Path(target)
    from advisor.tui.runfolder import is_run_dir

    if is_run_dir(path):
        return {"run_dir": path}
    if path.is_dir():
        raise UserError(f"{path}: a directory without run.json or metrics.jsonl (not a run folder)")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    if isinstance(data, dict) and "schema_version" in data and "request" in data:
        from advisor.planfile import read_plan

        return {"plan": read_plan(path), "plan_path": path}
    from advisor.request import load_request_yaml

    return {"request": load_request_yaml(path)}


def cmd_tui(args: argparse.Namespace) -> int:
    kwargs = app_kwargs(args.target)
    calibration = load_calibration(getattr(args, "calibration", None))
    from advisor.tui.app import SftplanApp  # lazy: textual only when the TUI runs

    app = SftplanApp(**kwargs, calibration=calibration)
    app.run()
    # Textual restores the terminal and prints the traceback of an unhandled exception, then sets 1
    return app.return_code or 0
