"""A few snapshots at 80x24 and 120x40 (cursor blink off, latency figure hidden).

They show a stored plan (data/snapshot_plan.yaml, the default scenario as planned when written), so a
change in the planner's numbers does not move them; test_session covers the live planner.

Update after an intended change: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from test_run_view import make_run_dir
from tuihelp import wait_for, wait_for_plan

from pathlib import Path

import pytest

from advisor.planfile import read_plan
from advisor.tui.app import SftplanApp

PLAN = Path(__file__).parent / "data" / "snapshot_plan.yaml"
# llama-3.1-70b, full SFT, 8 owned h100-sxm, $500 and 6 h: tiers that do not fit, owned vs rented, limits
PLAN_70B = Path(__file__).parent / "data" / "snapshot_plan_70b.yaml"


@pytest.fixture(autouse=True)
def no_latency_figure(monkeypatch):
    monkeypatch.setattr(SftplanApp, "SHOW_LATENCY", False)  # the figure varies run to run


async def settled(pilot) -> None:
    """The plan is shown and painted (the tier table sizes its columns after its rows land)."""
    await wait_for_plan(pilot)
    await wait_for(pilot, lambda: not pilot.app.workers)  # no re-plan still in flight (seen once in a full run)
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.1)


def _app(**kwargs) -> SftplanApp:
    if "run_dir" not in kwargs:
        kwargs.update(plan=read_plan(PLAN), plan_path="plan.yaml")
    return SftplanApp(**kwargs)


def test_session_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=settled)


def test_session_120x40(snap_compare):
    assert snap_compare(_app(), terminal_size=(120, 40), run_before=settled)


def test_70b_owned_80x24(snap_compare):
    app = SftplanApp(plan=read_plan(PLAN_70B), plan_path="plan.yaml")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)


def test_70b_owned_120x40(snap_compare):
    app = SftplanApp(plan=read_plan(PLAN_70B), plan_path="plan.yaml")
    assert snap_compare(app, terminal_size=(120, 40), run_before=settled)


def test_help_80x24(snap_compare):
    async def run_before(pilot):
        await settled(pilot)
        await pilot.press("f1")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "TextScreen")

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=run_before)


def test_run_view_120x40(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run_dir(tmp_path / "run", status="stopped", plan=read_plan(PLAN))

    async def run_before(pilot):
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "state", None) is not None)
        await pilot.pause(0.2)

    assert snap_compare(_app(run_dir="run"), terminal_size=(120, 40), run_before=run_before)
