"""The run view attached to a run folder fabricated here (run.json, metrics.jsonl, gate.json), stop, and run."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from textual.widgets import DataTable, Sparkline, Static
from tuihelp import answer_prompt, wait_for, wait_for_plan

from advisor.catalog import load_catalog
from advisor.models import DatasetSpec, PlanRequest
from advisor.planfile import approve, with_hash, write_plan
from advisor.planner import plan
from advisor.tui.app import SftplanApp
from advisor.tui.cli import app_kwargs

pytestmark = pytest.mark.anyio


def _plan():
    req = PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=2000, avg_tokens=256), epochs=2)
    return plan(req, load_catalog())


def make_run_dir(path, status="finished", epochs_done=2, plan=None):
    path.mkdir()
    # with_hash: a stored plan from before the request gained a field hashes differently today
    p = write_plan(approve(with_hash(plan or _plan()), "Cy"), path / "plan.yaml")
    steps = p.estimate.steps_per_epoch
    (path / "run.json").write_text(json.dumps({"plan_sha256": p.plan_sha256, "status": status, "pid": 4242,
                                               "started_at": "2026-11-28T20:00:00Z", "launch": ["x"]}))
    rows = [{"epoch": (s + 1) / steps, "step": s + 1, "loss": 1.0 + 1.0 / (1 + 0.05 * s), "learning_rate": 1e-5,
             "tokens_per_s_per_gpu": 0.9 * p.estimate.tokens_per_s_per_gpu, "step_time_s": 0.5,
             "peak_memory_bytes": 2**33, "elapsed_s": s * 0.5} for s in range(steps * epochs_done)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gate = {"baseline": {"loss": 2.1, "exact_match": 0.1, "contains": 0.2}, "thresholds": {},
            "epochs": [{"epoch": 1, "step": steps, "checkpoint": f"checkpoint-{steps}", "passed": True, "reasons": [],
                        "score": {"loss": 1.5, "exact_match": 0.4, "contains": 0.5}},
                       {"epoch": 2, "step": 2 * steps, "checkpoint": f"checkpoint-{2 * steps}", "passed": False,
                        "reasons": ["golden loss rose 7% > 2%"], "score": {"loss": 1.6, "exact_match": 0.3, "contains": 0.4}}]}
    if epochs_done:
        (path / "gate.json").write_text(json.dumps(gate))
    return p


async def test_attach_to_finished_run(tmp_path):
    run_dir = tmp_path / "run"
    p = make_run_dir(run_dir)
    kwargs = app_kwargs(str(run_dir))
    assert kwargs == {"run_dir": run_dir}
    app = SftplanApp(**kwargs)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunScreen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.state is not None and screen.state.metrics)
        assert "finished" in str(screen.query_one("#run-head", Static).render())
        total = p.estimate.total_steps
        assert f"step {total}/{total}" in str(screen.query_one("#run-progress-text", Static).render())
        assert len(screen.query_one("#run-loss", Sparkline).data) == total
        speed = str(screen.query_one("#run-speed", Static).render())
        assert f"{p.estimate.tokens_per_s_per_gpu:,.0f} planned" in speed and "90% of the estimate" in speed
        gate = screen.query_one("#run-gate", DataTable)
        assert gate.row_count == 3  # baseline + 2 epochs
        verdicts = [str(gate.get_row_at(i)[5]) for i in range(gate.row_count)]
        assert verdicts == ["baseline", "PASS", "FAIL"]
        assert "golden loss rose" in str(gate.get_row_at(2)[6])
        await pilot.press("s")  # a finished run: nothing to stop, no STOP file
        await pilot.pause()
        assert not (run_dir / "STOP").exists()


async def test_stop_asks_then_writes_stop_and_tails_new_lines(tmp_path):
    run_dir = tmp_path / "run"
    make_run_dir(run_dir, status="running", epochs_done=0)
    app = SftplanApp(run_dir=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunScreen")
        run_screen = app.screen
        with open(run_dir / "metrics.jsonl", "a") as fh:  # the run goes on: the view picks the new line up
            fh.write(json.dumps({"epoch": 0.5, "step": 1, "loss": 3.25, "tokens_per_s_per_gpu": 10.0}) + "\n")
        await wait_for(pilot, lambda: run_screen.state.losses and run_screen.state.losses[-1] == 3.25)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("n")
        await pilot.pause()
        assert not (run_dir / "STOP").exists()
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: (run_dir / "STOP").exists())
        await wait_for(pilot, lambda: "stop requested" in str(run_screen.query_one("#run-head", Static).render()))


FAKE_RUN = textwrap.dedent('''
    import json, os, sys
    plan_path, out = sys.argv[1], sys.argv[sys.argv.index("--out") + 1]
    os.makedirs(out)
    json.dump({"status": "finished", "pid": os.getpid(), "plan": plan_path}, open(os.path.join(out, "run.json"), "w"))
    open(os.path.join(out, "metrics.jsonl"), "w").write(json.dumps({"epoch": 1, "step": 1, "loss": 1.0}) + "\\n")
''')


async def test_run_starts_a_separate_process(tmp_path):
    """F5 on an approved, saved plan starts `<run command> PLAN --out RUN_DIR` as its own process."""
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    plan_path = tmp_path / "plan.yaml"
    p = write_plan(approve(_plan(), "Di"), plan_path)
    app = SftplanApp(plan=p, plan_path=plan_path, run_command=[sys.executable, str(fake)])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f5")
        await answer_prompt(pilot, str(tmp_path / "run1"))
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunScreen")
        proc = app.processes[0]
        assert proc.wait(timeout=30) == 0
        assert proc.pid != __import__("os").getpid()
        run = json.loads((tmp_path / "run1" / "run.json").read_text())
        assert run["plan"] == str(plan_path) and run["pid"] == proc.pid
        await wait_for(pilot, lambda: app.screen.state.status == "finished")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ != "RunScreen")


async def test_failed_launch_shows_its_output(tmp_path):
    """A `sftplan run` that refuses (e.g. preflight) exits at once: the view says so and shows why."""
    fake = tmp_path / "refuse.py"
    fake.write_text("import sys; print('sftplan: devices differ from the plan'); sys.exit(2)\n")
    plan_path = tmp_path / "plan.yaml"
    p = write_plan(approve(_plan(), "Di"), plan_path)
    app = SftplanApp(plan=p, plan_path=plan_path, run_command=[sys.executable, str(fake)])
    async with app.run_test(size=(120, 40)) as pilot:
        app.start_run(tmp_path / "run2")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunScreen")
        app.processes[0].wait(timeout=30)
        def head_text() -> str:  # "" until the run view has drawn its head (it may be mid-refresh under load)
            heads = app.screen.query("#run-head") if app.screen.__class__.__name__ == "RunScreen" else []
            return str(heads[0].render()) if heads else ""

        await wait_for(pilot, lambda: "exited (2)" in head_text())
        assert "devices differ" in head_text()


def test_unapproved_plan_does_not_run(tmp_path):
    """F5 refuses an unapproved plan before starting anything (verify's reason)."""
    import asyncio

    plan_path = tmp_path / "plan.yaml"
    p = write_plan(_plan(), plan_path)

    async def go():
        app = SftplanApp(plan=p, plan_path=plan_path, run_command=["false"])
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            await pilot.pause(0.1)
            assert app.processes == [] and app.screen.__class__.__name__ == "Screen"

    asyncio.run(go())
