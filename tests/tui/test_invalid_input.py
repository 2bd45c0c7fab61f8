"""Invalid input is marked at its field with the reason; the last valid plan stays on screen."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static
from tuihelp import wait_for, wait_for_plan

from advisor.tui.app import SftplanApp

pytestmark = pytest.mark.anyio


def _reason(app, field: str) -> str:
    return str(app.query_one(f"#{field}-error", Static).render())


async def _set(pilot, field: str, text: str) -> None:
    await pilot.click(f"#{field}")
    pilot.app.query_one(f"#{field}", Input).value = ""
    await pilot.press(*text)


async def test_bad_number_marks_field_and_keeps_plan():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await _set(pilot, "examples", "12")
        await wait_for(pilot, lambda: app.plan.request.dataset.examples == 12 and app.shown_generation == app.generation)
        good = app.plan
        await pilot.press("x")
        await wait_for(pilot, lambda: _reason(app, "examples"))  # shown once typing pauses
        assert "not a whole number" in _reason(app, "examples")
        assert app.query_one("#examples", Input).has_class("-invalid")
        assert app.plan is good  # the last valid plan stays
        assert "last valid plan" in str(app.status.render())

        await _set(pilot, "examples", "0")
        await wait_for(pilot, lambda: "greater than 0" in app.errors.get("examples", ""))

        await _set(pilot, "examples", "30000")  # fixed: the mark goes away and the plan follows
        await wait_for(pilot, lambda: not app.errors and app.plan.request.dataset.examples == 30_000)
        assert _reason(app, "examples") == ""
        assert not app.query_one("#examples", Input).has_class("-invalid")


async def test_unknown_model_and_bad_owned_hardware():
    app = SftplanApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        good = app.plan
        app.query_one("#model", Input).value = "llama-9z"  # the planner's UserError, mapped back to the model field
        await wait_for(pilot, lambda: _reason(app, "model"))
        assert "unknown model" in _reason(app, "model")
        assert app.plan is good

        await _set(pilot, "model", "llama-3.1-8b")
        await wait_for(pilot, lambda: not app.errors)
        await _set(pilot, "have", "h100:x")
        await wait_for(pilot, lambda: _reason(app, "have"))
        assert "GPU:COUNT" in _reason(app, "have")

        await _set(pilot, "have", "nosuchgpu:8")  # well-formed but unknown: the catalog's did-you-mean
        await wait_for(pilot, lambda: "have" in app.errors or "" in app.errors)
        assert "unknown GPU" in (app.errors.get("have") or app.errors.get(""))
        assert app.plan.request.model == "llama-3.1-8b"


async def test_missing_data_file_is_marked(tmp_path):
    app = SftplanApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        app.query_one("#dataset_file", Input).value = str(tmp_path / "nope.jsonl")
        await wait_for(pilot, lambda: _reason(app, "dataset_file"))
        assert "no such file" in _reason(app, "dataset_file")
        rows = tmp_path / "train.jsonl"
        rows.write_text('{"prompt": "hello there", "response": "general kenobi"}\n' * 40)
        app.query_one("#dataset_file", Input).value = str(rows)
        await wait_for(pilot, lambda: not app.errors and app.plan.request.dataset.examples == 40)
        assert app.plan.request.dataset.file.rows == 40
