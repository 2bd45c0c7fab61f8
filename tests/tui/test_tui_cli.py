"""`sftplan tui [request.yaml | plan.yaml | RUN_DIR]`: what the app opens with; bad targets exit 2."""

from __future__ import annotations

import pytest
import yaml

from advisor.cli import build_parser, main
from advisor.errors import UserError
from advisor.models import Plan, PlanRequest
from advisor.tui.cli import app_kwargs


def test_registered_and_default_command():
    args = build_parser().parse_args(["tui"])
    assert args.target is None and args.func.__name__ == "cmd_tui"
    assert app_kwargs(None) == {}


def test_request_and_plan_files(tmp_path):
    req = tmp_path / "request.yaml"
    req.write_text(yaml.safe_dump({"model": "llama-3.2-1b", "dataset": {"examples": 5000, "avg_tokens": 300}}))
    kw = app_kwargs(str(req))
    assert isinstance(kw["request"], PlanRequest) and kw["request"].model == "llama-3.2-1b"
    plan_path = tmp_path / "plan.yaml"
    assert main(["plan", "--request", str(req), "-o", str(plan_path), "--json"]) == 0
    kw = app_kwargs(str(plan_path))
    assert isinstance(kw["plan"], Plan) and kw["plan_path"] == plan_path


def test_bad_targets(tmp_path, capsys):
    with pytest.raises(UserError, match="no such file"):
        app_kwargs(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="not a run folder"):
        app_kwargs(str(tmp_path))
    assert main(["tui", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
