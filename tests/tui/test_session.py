"""A whole planning session driven by key presses: type inputs, see the plan change, save, approve."""

from __future__ import annotations

from advisor.planfile import read_plan, verify
from advisor.tui.app import SftplanApp
import pytest
from tuihelp import answer_prompt as _answer, wait_for, wait_for_plan

pytestmark = pytest.mark.anyio


async def _type(pilot, field: str, text: str) -> None:
    await pilot.click(f"#{field}")
    app = pilot.app
    app.query_one(f"#{field}").value = ""
    await pilot.press(*text)


async def test_session_type_save_approve(tmp_path):
    app = SftplanApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        first = app.plan
        assert first.model.name == "llama-3.1-8b"
        assert "llama-3.1-8b" in str(app.plan_view.card.render())

        await _type(pilot, "model", "llama-3.1-70b")
        await wait_for(pilot, lambda: app.plan.model.name == "llama-3.1-70b" and app.shown_generation == app.generation)
        assert app.plan.model.params > 60e9
        assert "llama-3.1-70b" in str(app.plan_view.card.render())
        assert app.plan_view.tiers.row_count == len(app.plan.tiers)

        await _type(pilot, "examples", "200000")
        await wait_for(pilot, lambda: app.plan.request.dataset.examples == 200_000)
        await pilot.click("#goal-hard-reasoning")
        await wait_for(pilot, lambda: "hard-reasoning" in app.plan.request.goals)
        assert app.plan.method == "full-sft"

        target = tmp_path / "plan.yaml"
        await pilot.press("f2")
        await _answer(pilot, str(target))
        assert target.is_file() and target.with_suffix(".md").is_file()
        saved = read_plan(target)
        assert saved.plan_sha256 == app.plan.plan_sha256
        assert saved.request.model == "llama-3.1-70b" and saved.request.goals == ["hard-reasoning"]
        assert verify(saved) != ""  # not approved yet

        await pilot.press("f3")
        await _answer(pilot, "Ada Reviewer", typed=True)
        approved = read_plan(target)
        assert verify(approved) == ""
        assert approved.approval.by == "Ada Reviewer"
        assert "approved by Ada Reviewer" in target.with_suffix(".md").read_text()
        assert "approved by Ada Reviewer" in str(app.plan_view.card.render())

        # sort the tier table by cost: fitting tiers come cheapest first
        await pilot.press("f7")
        costs = [t.cost_usd for t in sorted(app.plan.tiers, key=lambda t: (not t.fits, t.cost_usd or 0))]
        first_row = app.plan_view.tiers.get_row_at(0)
        cheapest = min((t for t in app.plan.tiers if t.fits), key=lambda t: t.cost_usd)
        assert cheapest.gpu in str(first_row[0]) and costs

        # the help screen lists every key
        await pilot.press("f1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")
        body = str(app.screen.query_one("#body").render())
        for key in ("F2", "F3", "F4", "F5", "F6", "F7"):
            assert key in body
        await pilot.press("escape")


async def test_open_plan_keeps_approval_and_diffs(tmp_path):
    """Opening an approved plan.yaml shows it as approved; F4 diffs it against another plan."""
    from advisor.catalog import load_catalog
    from advisor.models import DatasetSpec, PlanRequest
    from advisor.planfile import approve, write_plan
    from advisor.planner import plan

    req = PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=20_000, avg_tokens=512))
    path = write_plan(approve(plan(req, load_catalog()), "Bo"), tmp_path / "a.yaml")
    other = write_plan(plan(req.replace(**{"model": "llama-3.2-3b"}), load_catalog()), tmp_path / "b.yaml")
    app = SftplanApp(plan=read_plan(tmp_path / "a.yaml"), plan_path=tmp_path / "a.yaml")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert app.plan.approval is not None and app.plan.plan_sha256 == path.plan_sha256
        assert "approved by Bo" in str(app.plan_view.card.render())
        await pilot.press("f4")
        await _answer(pilot, str(tmp_path / "b.yaml"))
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")
        body = str(app.screen.query_one("#body").render())
        assert "change(s)" in body and "llama-3.2-3b" in body
        assert other.plan_sha256


async def test_selected_tier_shows_its_memory_breakdown():
    """Moving down the tier table shows that row's memory against its GPU (planner pinned to the row)."""
    app = SftplanApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        table = app.plan_view.tiers
        rec = app.plan.recommended.gpu
        other = next(t for t in app.plan.tiers if t.fits and t.gpu != rec)
        table.focus()
        table.move_cursor(row=table.get_row_index(other.gpu))
        memory = app.plan_view.memory
        await wait_for(pilot, lambda: f"memory per GPU, {other.gpu}" in str(memory.render())
                       and "optimizer" in str(memory.render()))
        assert f"{other.config.num_gpus} x {other.gpu}" in str(memory.render())


async def test_preset_picker_filters_and_picks():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await pilot.press("f9")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PresetScreen")
        await pilot.press(*"qwen 14", "enter")
        await wait_for(pilot, lambda: app.plan.model.name == "qwen2.5-14b" and app.shown_generation == app.generation)
        assert app.inputs.model_input.value == "qwen2.5-14b"
