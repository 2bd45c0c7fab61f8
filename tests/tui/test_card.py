"""Issue 17, sections 2-3: the decision card, collapsed rule sources, the command palette, Ctrl keys."""

from __future__ import annotations

import pytest
from textual.widgets import Collapsible, Input
from test_defects import screen_name, settled_plan
from tuihelp import answer_prompt, wait_for, wait_for_plan

from advisor.tui.app import SftplanApp

pytestmark = pytest.mark.anyio

REQ = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1024}, "method": "full-sft",
       "budget_usd": 500, "deadline_hours": 24, "have": [{"gpu": "h100-sxm", "count": 2}]}


def card_text(app) -> str:
    return str(app.plan_view.card.render())


async def test_card_says_what_runs_against_budget_and_deadline_owned_vs_rented_and_the_alternative():
    app = SftplanApp(request=REQ)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        plan, card = app.plan, card_text(app)
        rec, est, la = plan.recommended, plan.estimate, plan.lora_alternative
        assert card.startswith("full SFT") and "NOT APPROVED" in card
        assert f"run   {rec.num_gpus} x {rec.gpu}, {rec.strategy}" in card
        over = est.cost_usd > 500
        assert ("> $500 budget OVER" if over else "<= $500") in card
        assert "<= 24.0 h" in card or "> 24.0 h deadline" in card
        owned = 2 if rec.gpu == "h100-sxm" else 0
        if rec.num_gpus > owned:
            assert (f"rent {rec.num_gpus - owned} more" if owned else f"rent {rec.num_gpus} {rec.gpu}") in card
        assert f"LoRA r{la.rank} {la.num_gpus} x {la.gpu}" in card  # the alternative, priced
        assert "free (" in card and "GiB per GPU" in card  # headroom
        for w in plan.warnings:
            assert w[:30] in card.replace("\n", " ")
        # the card stays at the top while the plan body scrolls
        top = app.plan_view.card.region.y
        app.query_one("#plan-body").scroll_end(animate=False)
        await pilot.pause(0.1)
        assert app.plan_view.card.region.y == top and app.plan_view.card.region.height >= 5


async def test_rent_more_when_owned_gpus_are_too_few():
    req = dict(REQ, have=[{"gpu": "h100-sxm", "count": 2}], gpu="h100-sxm", num_gpus=8, budget_usd=None)
    app = SftplanApp(request=req)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        assert app.plan.recommended.num_gpus == 8
        assert "2 h100-sxm owned, rent 6 more" in card_text(app)


async def test_card_is_marked_stale_while_an_input_is_invalid_and_approval_shows():
    app = SftplanApp(request=REQ)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        app.query_one("#examples", Input).value = "lots"
        await wait_for(pilot, lambda: "STALE" in card_text(app))
        assert "invalid examples" in card_text(app)
        app.query_one("#examples", Input).value = "50000"
        await wait_for(pilot, lambda: "STALE" not in card_text(app))


async def test_rule_sources_are_collapsed_until_enter(tmp_path):
    app = SftplanApp(request=REQ)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        box = app.query_one("#sources-box", Collapsible)
        assert box.collapsed and not app.query_one("#sources").region.height
        source = next(f.source for f in app.plan.findings if f.rule_id.startswith("method."))
        box.query_one("CollapsibleTitle").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not box.collapsed)
        await pilot.pause(0.1)
        assert source[:40] in str(app.query_one("#sources").render()).replace("\n", " ")


async def test_ctrl_aliases_and_the_palette_reach_every_action(tmp_path):
    app = SftplanApp(request=REQ)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        keys = {b.action: b.key for b in app._bindings.key_to_bindings.get("ctrl+s", [])}
        assert keys.get("save")
        await pilot.press("ctrl+s")  # save without an F-key
        await answer_prompt(pilot, str(tmp_path / "p.yaml"))
        await wait_for(pilot, lambda: (tmp_path / "p.yaml").is_file())
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen_name(app) == "TextScreen")
        body = str(app.screen.query_one("#body").render())
        for key in ("F2 / Ctrl+S", "F3 / Ctrl+Y", "F9 / Ctrl+L", "Ctrl+P", "Ctrl+Q"):
            assert key in body
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Save the plan", "Approve the saved plan", "Attach to a run folder", "Theme"):
            assert any(wanted.lower() in t.lower() for t in titles), (wanted, titles)
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await wait_for(pilot, lambda: screen_name(app) == "CommandPalette")
        await pilot.press(*"pick a model")
        await pilot.pause(0.5)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: screen_name(app) == "PresetScreen")


async def test_footer_shows_ctrl_keys_and_status_says_where_focus_is():
    app = SftplanApp(request=REQ)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        await pilot.pause(0.1)
        footer = " ".join(str(k.render()) for k in app.query("FooterKey"))
        for key in ("^s", "^q", "^y"):
            assert key in footer, footer
        assert "in model" in str(app.status.render())
        def place() -> str:
            labels = app.screen.query(".focus-place")
            return str(labels.first().render()).strip() if labels else ""

        await wait_for(pilot, lambda: place() == "model")
        app.plan_view.tiers.focus()
        await wait_for(pilot, lambda: place() == "tier table")
        assert "tier" in str(app.status.render())
        await pilot.press("tab")
        await wait_for(pilot, lambda: place() == "rule sources")
