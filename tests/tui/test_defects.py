"""Issue 17, section 1: each defect a newcomer hit, driven by key presses (Pilot)."""

from __future__ import annotations

import shutil
import sys

import pytest
from rich.text import Text
from textual.widgets import Checkbox, Input, OptionList, ProgressBar, Static
from test_run_view import _plan, make_run_dir
from tuihelp import answer_prompt, wait_for, wait_for_plan

from advisor.planfile import approve, read_plan, verify, write_plan
from advisor.tui.app import SftplanApp
from advisor.tui.widgets.plan_view import COLUMNS

pytestmark = pytest.mark.anyio


def screen_name(app) -> str:
    return app.screen.__class__.__name__


async def set_field(pilot, field: str, text: str) -> None:
    # the app ignores input changes until it has filled its inputs from the opened plan (one refresh after
    # mount); a value set before then is taken as part of that fill and never re-planned
    await wait_for(pilot, lambda: not pilot.app._filling)
    pilot.app.query_one(f"#{field}", Input).value = text


async def settled_plan(pilot, predicate=lambda: True) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.shown_generation == app.generation and not app.workers and predicate())


# ---------------------------------------------------------------- 1. attach to a missing folder, crash exit code
@pytest.mark.parametrize("what", ["missing", "foreign"])
async def test_attach_to_a_missing_or_foreign_folder_is_an_error_at_the_prompt(tmp_path, what):
    target = tmp_path / "does" / "not" / "exist" if what == "missing" else tmp_path
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await pilot.press("f6")
        await answer_prompt(pilot, str(target))
        assert screen_name(app) == "PromptScreen"  # still asking: no run view on a folder that is not a run
        error = str(app.screen.query_one("#prompt-error", Static).render())
        assert ("no such folder" if what == "missing" else "not a run folder") in error
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(app) == "Screen")


async def test_stop_in_a_run_view_whose_folder_vanished_does_not_crash(tmp_path):
    run_dir = tmp_path / "run"
    make_run_dir(run_dir, status="running", epochs_done=0)
    app = SftplanApp(run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "RunScreen")
        shutil.rmtree(run_dir)
        await pilot.press("s")
        await pilot.pause(0.1)
        if screen_name(app) == "ConfirmScreen":
            await pilot.press("y")
        await pilot.pause(0.2)
        assert app.return_code is None and app.is_running  # no FileNotFoundError
        assert not run_dir.exists()


async def test_an_unhandled_exception_exits_non_zero():
    app = SftplanApp()

    def boom() -> None:
        raise RuntimeError("boom")

    app.action_help = boom
    with pytest.raises(RuntimeError):
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for_plan(pilot)
            await pilot.press("f1")
            await pilot.pause(0.2)
    assert app.return_code == 1


def test_cmd_tui_returns_the_apps_exit_code(monkeypatch):
    from advisor.cli import main

    monkeypatch.setattr(SftplanApp, "run", lambda self, **kw: setattr(self, "_return_code", 1))
    assert main(["tui"]) == 1


# ---------------------------------------------------------------- 2 and 4. the star moves, and shows what runs
async def test_owned_gpus_move_the_highlight_and_the_starred_row_shows_the_recommended_config():
    # full SFT: a LoRA plan of this 8B fits one GPU on every tier, so its owned config and the tier's cheapest agree
    from advisor.tui.widgets.inputs import DEFAULT_REQUEST
    app = SftplanApp(request={**DEFAULT_REQUEST, "method": "full-sft"})
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        table = app.plan_view.tiers
        before = app.plan.recommended.gpu
        assert before != "h100-sxm"
        app.query_one("#have", Input).focus()
        await pilot.press(*"h100-sxm:8")
        await settled_plan(pilot, lambda: app.plan.recommended.gpu == "h100-sxm")
        await pilot.pause(0.1)
        old = table.get_row(before)
        new = table.get_row("h100-sxm")
        assert all("bold green" not in str(cell.style) for cell in old), [c.style for c in old]
        assert all("bold green" in str(cell.style) for cell in new)
        assert str(new[0]).startswith("*") and not str(old[0]).startswith("*")
        rec, est = app.plan.recommended, app.plan.estimate
        row = next(t for t in app.plan.tiers if t.gpu == "h100-sxm")
        assert row.config.num_gpus != rec.num_gpus  # the tier's cheapest is not what runs on owned GPUs
        cells = [str(c).strip() for c in new]
        assert cells[5].startswith(f"{rec.num_gpus}x") and cells[1] == f"${est.cost_usd:,.2f}"


# ---------------------------------------------------------------- 3. short reasons, every column at 80 columns
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_every_tier_column_fits_and_the_full_reason_is_in_the_detail(size):
    app = SftplanApp(request={"model": "llama-3.1-70b", "dataset": {"examples": 50_000, "avg_tokens": 1024}})
    async with app.run_test(size=size) as pilot:
        await wait_for_plan(pilot)
        await pilot.pause(0.3)
        table = app.plan_view.tiers
        body = app.query_one("#plan-body")
        assert table.virtual_size.width <= body.scrollable_content_region.width, "a column is off screen"
        heads = [str(c.label).strip() for c in table.columns.values()]
        assert heads == list(COLUMNS)
        bad = next(t for t in app.plan.tiers if not t.fits)
        reason = str(table.get_row(bad.gpu)[-1]).strip()
        assert len(reason) <= 32 and len(reason) < len(bad.why_not)  # the short reason; the full one below
        table.focus()
        table.move_cursor(row=table.get_row_index(bad.gpu))
        await wait_for(pilot, lambda: bad.why_not in str(app.plan_view.memory.render()).replace("\n", " ")
                       or bad.why_not[:40] in str(app.plan_view.memory.render()))


# ---------------------------------------------------------------- 5. no silent loss of an approval or of edits
async def test_saving_over_an_approved_plan_asks_and_names_the_approval(tmp_path):
    path = tmp_path / "plan.yaml"
    write_plan(approve(_plan(), "Bo"), path)
    app = SftplanApp(plan=read_plan(path), plan_path=path)
    async with app.run_test(size=(120, 40)) as pilot:
        await set_field(pilot, "examples", "3000")
        await settled_plan(pilot, lambda: app.plan.request.dataset.examples == 3000)
        await pilot.press("f2")
        await answer_prompt(pilot, str(path))  # F2's default path is the approved file
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen")
        question = str(app.screen.query_one("#question", Static).render())
        assert "approved by Bo" in question and "approval is lost" in question
        await pilot.press("n")
        await pilot.pause(0.1)
        assert verify(read_plan(path)) == ""  # still approved
        await pilot.press("f2")
        await answer_prompt(pilot, str(path))
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: read_plan(path).request.dataset.examples == 3000)
        assert read_plan(path).approval is None


async def test_quit_with_unsaved_changes_asks_first(tmp_path):
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await set_field(pilot, "examples", "12000")
        await settled_plan(pilot, lambda: app.plan.request.dataset.examples == 12_000)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen")
        question = str(app.screen.query_one("#question", Static).render())
        assert "never saved" in question and "llama-3.1-8b" in question
        await pilot.press("n")
        await pilot.pause(0.1)
        assert app.is_running and app.return_code is None
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(app) == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.return_code is not None)


async def test_quit_without_changes_does_not_ask():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: app.return_code is not None)


# ---------------------------------------------------------------- 6. saving while a field is invalid
async def test_saving_while_a_field_is_invalid_warns_and_names_the_saved_inputs(tmp_path):
    app = SftplanApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        await set_field(pilot, "examples", "12x")
        await wait_for(pilot, lambda: "examples" in app.errors)
        await pilot.press("f2")
        await wait_for(pilot, lambda: screen_name(app) == "PromptScreen")
        question = str(app.screen.query_one("#question", Static).render())
        assert "invalid examples" in question and "50,000 examples x 1,024 tokens" in question
        await answer_prompt(pilot, str(tmp_path / "p.yaml"))
        assert read_plan(tmp_path / "p.yaml").request.dataset.examples == 50_000


# ---------------------------------------------------------------- 7. the run view: back, hidden saves, dead runs
async def test_attached_run_view_escape_goes_back_to_the_runs_plan_and_f2_does_nothing(tmp_path):
    run_dir = tmp_path / "run"
    p = make_run_dir(run_dir, status="running", epochs_done=0)
    app = SftplanApp(run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: screen_name(app) == "RunScreen")
        await pilot.press("f2")
        await pilot.pause(0.2)
        assert screen_name(app) == "RunScreen"  # no save prompt for the plan hidden behind the run view
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(app) == "Screen")
        assert app.is_running
        assert app.plan.plan_sha256 == p.plan_sha256 and app.plan.model.name == "llama-3.2-1b"


async def test_failed_launch_stops_the_pulse_and_offers_no_stop(tmp_path):
    fake = tmp_path / "refuse.py"
    fake.write_text("import sys; print('sftplan: devices differ from the plan'); sys.exit(2)\n")
    plan_path = tmp_path / "plan.yaml"
    p = write_plan(approve(_plan(), "Di"), plan_path)
    app = SftplanApp(plan=p, plan_path=plan_path, run_command=[sys.executable, str(fake)])
    async with app.run_test(size=(120, 40)) as pilot:
        app.start_run(tmp_path / "run2")
        await wait_for(pilot, lambda: screen_name(app) == "RunScreen")
        app.processes[0].wait(timeout=30)
        await wait_for(pilot, lambda: app.screen.state is not None and "exited" in app.screen.state.status)
        await pilot.pause(0.6)
        assert app.screen.query_one("#run-progress", ProgressBar).total is not None  # not indeterminate
        await pilot.press("s")
        await pilot.pause(0.2)
        assert screen_name(app) == "RunScreen"  # no "stop the run?" for a dead run
        assert not (tmp_path / "run2" / "STOP").exists()


# ---------------------------------------------------------------- 8. unknown model: one line, after a pause
async def test_unknown_model_is_one_line_with_a_did_you_mean_shown_after_typing_pauses(monkeypatch):
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        shown: list[str] = []
        original = app.inputs.show_errors

        def spy(errors):
            if errors.get("model"):
                shown.append(errors["model"])
            original(errors)

        app.inputs.show_errors = spy
        model = app.query_one("#model", Input)
        model.value = ""
        await pilot.press(*"lama-3.1-8b")
        await wait_for(pilot, lambda: shown)
        await pilot.pause(0.6)
        assert len(shown) <= 3, shown  # not once per keystroke
        reason = str(app.query_one("#model-error", Static).render())
        assert reason == "unknown model 'lama-3.1-8b': did you mean llama-3.1-8b? F9 lists all"


# ---------------------------------------------------------------- 9. focus, preset dialog, budgets, checkboxes
async def test_focus_starts_on_the_first_input():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        assert app.focused is app.query_one("#model", Input)
        await pilot.press("end", "x")
        assert app.query_one("#model", Input).value.endswith("x")


async def test_preset_dialog_is_centred_titled_and_down_moves_the_list():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await pilot.press("f9")
        await wait_for(pilot, lambda: screen_name(app) == "PresetScreen")
        await pilot.pause(0.1)
        dialog = app.screen.query_one(".dialog")
        r = dialog.region
        assert abs(r.x - (80 - r.right)) <= 1 and r.y >= 0 and r.bottom <= 24
        title = app.screen.query_one("#preset-title")
        assert title.region.height >= 1 and r.y <= title.region.y < r.bottom
        options = app.screen.query_one("#presets", OptionList)
        start = options.highlighted or 0
        await pilot.press("down", "down")
        assert options.highlighted == start + 2
        assert isinstance(app.focused, Input)  # the filter keeps the focus
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(app) == "Screen")


@pytest.mark.parametrize("typed", ["5k", "$5,000", "5000"])
async def test_budget_as_people_type_it(typed):
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        await set_field(pilot, "budget_usd", typed)
        await settled_plan(pilot, lambda: app.plan.request.budget_usd == 5000)
        assert not app.errors


async def test_unticked_checkboxes_show_no_x():
    app = SftplanApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_plan(pilot)
        box = app.query_one("#goal-hard-reasoning", Checkbox)
        assert "X" not in Text.from_markup("").plain + str(box.render())
        box.value = True
        await pilot.pause()
        assert "X" in str(box.render())
        assert "X" not in str(app.query_one("#nvidia_stack", Checkbox).render())


# ---------------------------------------------------------------- 7. saving over a file the plan reads
async def test_saving_over_the_plans_golden_set_is_refused_and_the_file_kept(tmp_path):
    from advisor.catalog import load_catalog
    from advisor.models import DatasetSpec, PlanRequest
    from advisor.planner import plan as make_plan
    from advisor.request import data_file

    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"prompt": "2+2=", "expected": "4"}\n')
    before = golden.read_bytes()
    p = make_plan(PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=2000, avg_tokens=256),
                              golden=data_file(str(golden))), load_catalog())
    app = SftplanApp(plan=p)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_plan(pilot)
        seen = []
        app.notify = lambda message, **kw: seen.append(str(message))
        await pilot.press("f2")
        await answer_prompt(pilot, str(golden.with_suffix(".yaml")))  # its review copy would be golden.md: fine
        await wait_for(pilot, lambda: any("saved" in m for m in seen))
        seen.clear()
        await pilot.press("f2")
        await answer_prompt(pilot, str(golden))
        await wait_for(pilot, lambda: any("not saved" in m for m in seen))
        assert any("would write over golden" in m for m in seen), seen
        assert golden.read_bytes() == before
