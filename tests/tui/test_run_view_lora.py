"""The TUI runs an approved LoRA plan for real: F5's path (app.start_run) starts `sftplan run` on the tiny
model (peft + Trainer), and the run view follows it to the end: status, steps, the gate table per epoch.
The other run-view tests fabricate the run folder and the run command; this one runs the trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static
from tuihelp import wait_for

from advisor.planfile import read_plan
from advisor.tui.app import SftplanApp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "executor"))
from tinyplan import ROOT, approved_plan_file, tiny_assets, tiny_plan  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_tui_runs_a_lora_plan_to_the_end(tmp_path, monkeypatch):
    assets = tiny_assets(tmp_path, n_train=16, n_golden=2)
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, method="lora", epochs=1, learning_rate=1e-2))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the launched `sftplan run` imports this tree
    monkeypatch.chdir(ROOT)
    app = SftplanApp(plan=read_plan(plan_path), plan_path=plan_path,
                     run_command=[sys.executable, "-m", "advisor", "run"])
    run_dir = tmp_path / "run"
    async with app.run_test(size=(120, 40)) as pilot:
        app.start_run(run_dir)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunScreen")
        screen = app.screen
        assert app.processes[0].wait(timeout=400) == 0, (run_dir.parent / "run.tui-launch.log").read_text()[-3000:]
        await wait_for(pilot, lambda: screen.state is not None and screen.state.status == "finished"
                       and screen.query_one("#run-gate", DataTable).row_count == 2, timeout_s=60)
        assert "finished" in str(screen.query_one("#run-head", Static).render())
        steps = read_plan(plan_path).estimate.total_steps
        assert f"step {steps}/{steps}" in str(screen.query_one("#run-progress-text", Static).render())
        gate = screen.query_one("#run-gate", DataTable)
        assert [str(gate.get_row_at(i)[5]) for i in range(2)] == ["baseline", "PASS"]
    epoch = json.loads((run_dir / "gate.json").read_text())["epochs"][0]
    assert (run_dir / epoch["checkpoint"] / "adapter_model.safetensors").is_file()
