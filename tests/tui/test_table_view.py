"""The by-scale table view (F10 / Ctrl+N): the same cells as advisor.scale_table.build, one-line errors, Escape."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable
from tuihelp import wait_for, wait_for_plan

from advisor.catalog import load_catalog
from advisor.planfile import read_plan
from advisor.scale_table import DEFAULT_MODELS, assumption_lines, build, cell_lines
from advisor.tui.app import SftplanApp
from advisor.tui.screens.table import ScaleTableScreen

pytestmark = pytest.mark.anyio

PLAN = Path(__file__).parent / "data" / "snapshot_plan.yaml"  # a stored plan: the session starts no planner


def _app() -> SftplanApp:
    return SftplanApp(plan=read_plan(PLAN), plan_path="plan.yaml")


async def _open(pilot, key: str) -> ScaleTableScreen:
    await wait_for_plan(pilot)
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ScaleTableScreen))
    screen = pilot.app.screen
    await _built(pilot, screen)
    return screen


async def _built(pilot, screen: ScaleTableScreen) -> None:
    """The table for the inputs on screen is shown (or refused), and no worker is still building one."""
    await wait_for(pilot, lambda: screen.shown_generation == screen.generation and not pilot.app.workers, timeout_s=120)
    await pilot.pause()


async def _submit(pilot, screen: ScaleTableScreen, field: str, value: str) -> None:
    widget = screen.query_one(f"#table-{field}")
    widget.value = value
    widget.focus()
    await pilot.pause()
    await pilot.press("enter")
    await _built(pilot, screen)


def _shown(screen: ScaleTableScreen) -> tuple[list[str], list[list[str]]]:
    grid = screen.query_one("#scale-table", DataTable)
    columns = [str(c.label) for c in grid.ordered_columns]
    rows = [[str(cell) for cell in grid.get_row_at(i)] for i in range(grid.row_count)]
    return columns, rows


def _expected(models: list[str], avg_tokens: int) -> tuple[list[str], list[list[str]], list[str]]:
    t = build(load_catalog(), models=models, avg_tokens=avg_tokens)
    columns = ["examples", *t.model_names]
    rows = [[label, *("\n".join(cell_lines(c)) for c in row)] for (label, _), row in zip(t.rows, t.cells)]
    return columns, rows, assumption_lines(t)


async def test_opens_with_the_cores_cells_and_rebuilds_for_new_models():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open(pilot, "ctrl+n")
        columns, rows, assumptions = _expected(list(DEFAULT_MODELS), 512)
        assert _shown(screen) == (columns, rows)
        assert len(rows) == 5 and len(columns) == 5  # five bands x four default sizes
        text = str(screen.query_one("#table-assumptions").render())
        assert all(line in text for line in assumptions), text
        assert screen.error == ""

        await _submit(pilot, screen, "models", "1b, 8b")
        await _submit(pilot, screen, "tokens", "1024")
        columns, rows, assumptions = _expected(["1b", "8b"], 1024)
        assert _shown(screen) == (columns, rows)
        assert "tokens per example: 1024" in str(screen.query_one("#table-assumptions").render())

        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)
        assert app.plan is not None and app.plan.plan_sha256 == read_plan(PLAN).plan_sha256  # the plan untouched


async def test_bad_entries_are_one_line_errors_and_escape_returns():
    app = _app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, "f10")
        before = _shown(screen)

        await _submit(pilot, screen, "models", "1b,foo")
        assert screen.error.startswith("models: entry 2 'foo': unknown model") and "\n" not in screen.error
        assert screen.models_input.has_class("-invalid") and screen.error_line.has_class("-shown")
        assert screen.error in str(screen.error_line.render())
        assert _shown(screen) == before  # the last good table stays

        await _submit(pilot, screen, "models", "1b,,8b")
        assert screen.error == "models: entry 2 is empty (a comma too many?)"

        await _submit(pilot, screen, "models", "1b")
        assert screen.error == "" and not screen.models_input.has_class("-invalid")
        assert len(_shown(screen)[0]) == 2

        await _submit(pilot, screen, "tokens", "lots")
        assert screen.error.startswith("tokens: 'lots'") and screen.tokens_input.has_class("-invalid")
        await _submit(pilot, screen, "tokens", "20000000")  # a number, refused by the request's own check
        assert screen.error.startswith("tokens: must be <=") and screen.tokens_input.has_class("-invalid")
        assert not screen.models_input.has_class("-invalid")

        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1)
        assert not isinstance(app.screen, ScaleTableScreen)


async def test_in_help_and_palette():
    app = _app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert any(t.startswith("By-scale table") for t in titles), titles
        assert any(k.startswith("F10 / Ctrl+N") for k, _ in app.HELP)
