"""The data check from the planning session (F12): the form's data file checked in a worker, summarised in a panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input
from tuihelp import wait_for, wait_for_plan

from advisor.datacheck import check
from advisor.planfile import read_plan
from advisor.tui.app import SftplanApp
from advisor.tui.screens.datacheck import DataCheckScreen

pytestmark = pytest.mark.anyio

PLAN = Path(__file__).parent / "data" / "snapshot_plan.yaml"


def _rows() -> list[dict]:
    return [
        {"prompt": "How do I reverse a list in Python?", "response": "Use reversed(xs) or xs[::-1]."},
        {"prompt": "Who do I write to about billing?", "response": "Write to jane.roe@example.org with the invoice."},
        {"prompt": "  how do I REVERSE a list in python?\n", "response": "Use  reversed(xs)  or xs[::-1]."},  # = line 1
        {"prompt": "What is the capital of France?", "response": "Paris."},
    ]


async def _set_data_file(pilot, path: str) -> None:
    pilot.app.query_one("#dataset_file", Input).value = path  # the session re-plans on the measured file
    await pilot.pause()
    await wait_for_plan(pilot)


async def test_f12_checks_the_forms_data_file_and_shows_the_planted_duplicate(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    app = SftplanApp(plan=read_plan(PLAN), plan_path="plan.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        await _set_data_file(pilot, str(data))
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, DataCheckScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.result is not None or screen.error, timeout_s=180)  # Presidio loads: seconds
        assert not screen.error
        assert screen.result.exact_duplicates == [[1, 3]]
        core = check(data, max_seq_len=app.plan.request.max_seq_len, model=app.plan.request.model)
        assert screen.result.to_dict() == core.to_dict()  # the core's own answer, with the session's settings
        await pilot.pause()
        body = str(screen.query_one("#check-body").render())
        assert f"{data}: 4 rows" in body
        assert f"{data}:1 repeated at {data}:3" in body
        assert "exact duplicates: 1 row(s)" in body
        assert f"{data}:2: EMAIL_ADDRESS in response" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)


async def test_f12_without_a_data_file_says_so_and_a_bad_file_is_one_line(tmp_path):
    app = SftplanApp(plan=read_plan(PLAN), plan_path="plan.yaml")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        assert app.query_one("#dataset_file", Input).value == ""
        await pilot.press("f12")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        assert any("no data file" in n.message for n in app._notifications)

        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(_rows()[0]) + "\n{not json\n")
        app.query_one("#dataset_file", Input).value = str(bad)  # the planner refuses it too; the check says why
        await pilot.pause()
        await pilot.press("f12")
        await wait_for(pilot, lambda: isinstance(app.screen, DataCheckScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.result is not None or screen.error, timeout_s=180)
        assert screen.result is None and screen.error.startswith(f"{bad}:2") and "\n" not in screen.error
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1 and not app.workers, timeout_s=60)
