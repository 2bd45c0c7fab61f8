"""`sftplan tui --calibration FILE` (and $SFTPLAN_CALIBRATION): the session plans with the factors and the
decision card shows calibrated vs raw, as the CLI does; a bad file is one line, exit 2, before the screen."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from tuihelp import wait_for_plan

from advisor import calibration
from advisor.cli import main
from advisor.tui.app import SftplanApp
from advisor.tui.cli import load_calibration

REQ = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1024}, "method": "full-sft",
       "gpu": "h100-sxm", "num_gpus": 8, "strategy": "fsdp"}


def _calibration_file(tmp: Path, ratio: float) -> Path:
    """Two finished runs of the class the request plans (h100-sxm / fsdp / bf16-mixed / full / 1-10B)."""
    for i in range(2):
        d = tmp / f"run{i}"
        d.mkdir()
        sha = f"{i:064x}"
        (d / "plan.yaml").write_text(yaml.safe_dump(
            {"plan_sha256": sha, "method": "full-sft", "model": {"params": 8_000_000_000},
             "recommended": {"gpu": "h100-sxm", "strategy": "fsdp", "precision": "bf16-mixed"}}))
        (d / "report.json").write_text(json.dumps({"plan_sha256": sha, "status": "finished", "figures": {
            "tokens_per_s_per_gpu": {"planned": 1000.0, "measured": 1000.0 * ratio, "unit": "tokens/s"}}}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens_per_s_per_gpu": 1000.0 * ratio}) + "\n")
    out = tmp / "cal.yaml"
    assert main(["calibrate", str(tmp / "run0"), str(tmp / "run1"), "-o", str(out)]) == 0
    return out


@pytest.mark.anyio
async def test_the_session_plans_calibrated_and_the_card_shows_raw_beside_it(tmp_path):
    cal = calibration.load(_calibration_file(tmp_path, 0.7))
    app = SftplanApp(request=REQ, calibration=cal)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        est, used = app.plan.estimate, app.plan.calibration
        assert used is not None and used.sha256 == cal.sha256
        assert est.tokens_per_s_per_gpu == pytest.approx(est.raw_tokens_per_s_per_gpu * 0.7, rel=0.01)
        card = str(app.plan_view.card.render())
        assert f"calib {est.tokens_per_s_per_gpu:,.0f} tok/s/GPU (raw {est.raw_tokens_per_s_per_gpu:,.0f})" in card
        assert "cal.yaml" in card


def test_the_flag_the_variable_and_a_bad_file(tmp_path, monkeypatch, capsys):
    path = _calibration_file(tmp_path, 0.8)
    monkeypatch.delenv("SFTPLAN_CALIBRATION", raising=False)
    assert load_calibration(None) is None
    assert load_calibration(str(path)).sha256 == calibration.load(path).sha256
    monkeypatch.setenv("SFTPLAN_CALIBRATION", str(path))
    assert load_calibration(None).path == str(path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: something-else\n")
    assert main(["tui", "--calibration", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a calibration file" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
