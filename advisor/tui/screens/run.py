"""The run view: tails a run folder (run.json, metrics.jsonl, gate.json) and asks a clean stop via STOP.

The training itself is a separate `sftplan run` process (started by the app, or by anyone: reopening a
run folder attaches). This screen only reads files, twice a second, a few appended lines at a time.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import getters
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, Sparkline, Static

from advisor.errors import UserError
from advisor.models import Plan
from advisor.planfile import read_plan
from advisor.tui.runfolder import RunState, RunTail, request_stop
from advisor.tui.screens.dialogs import ConfirmScreen

POLL_S = 0.5
GATE_COLUMNS = ("epoch", "step", "loss", "exact", "contains", "verdict", "reasons")


def _plan_of(run_dir: Path) -> Plan | None:
    try:
        return read_plan(run_dir / "plan.yaml")
    except (UserError, OSError, ValueError):
        return None


def _num(x: object, fmt: str = ".4f") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "-"


class RunScreen(Screen[None]):
    BINDINGS = [
        Binding("s", "stop", "stop run"),
        Binding("escape", "back", "back to plan"),
        Binding("question_mark", "app.help", "help", show=False),
    ]

    head = getters.query_one("#run-head", Static)
    progress = getters.query_one("#run-progress", ProgressBar)
    progress_text = getters.query_one("#run-progress-text", Static)
    loss_chart = getters.query_one("#run-loss", Sparkline)
    loss_text = getters.query_one("#run-loss-text", Static)
    speed = getters.query_one("#run-speed", Static)
    gate_table = getters.query_one("#run-gate", DataTable)

    def __init__(self, run_dir: str | Path, process=None, log: Path | None = None) -> None:
        super().__init__()
        self.launch_log = log  # the launching process's output, shown when it exits with an error
        self.run_dir = Path(run_dir)
        self.process = process  # a subprocess.Popen the app started, or None when attached
        self.tail = RunTail(self.run_dir)
        self.plan = _plan_of(self.run_dir)
        self.state: RunState | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="run-body"):
            yield Static("", id="run-head")
            yield Static("", id="run-progress-text")
            yield ProgressBar(id="run-progress", show_eta=False)
            yield Static("loss", id="run-loss-text")
            yield Sparkline([], id="run-loss")
            yield Static("", id="run-speed")
            yield Static("eval gate, after every epoch", classes="section")
            yield DataTable(id="run-gate", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "sftplan run view"
        self.sub_title = str(self.run_dir)
        self.gate_table.add_columns(*GATE_COLUMNS)
        self.refresh_state()
        self.set_interval(POLL_S, self.refresh_state)

    # ------------------------------------------------------------------ polling
    def refresh_state(self) -> None:
        if self.plan is None:
            self.plan = _plan_of(self.run_dir)
        state = self.tail.poll()
        if self.process is not None and self.process.poll() is not None and not state.finished:
            if state.status in ("starting", "running"):
                state.status = f"exited ({self.process.returncode})"
        self.state = state
        self._show(state)

    @property
    def ended(self) -> bool:
        """Nothing left to stop: the run finished, failed or stopped, or the process we started exited."""
        s = self.state
        return s is not None and (s.finished or s.status.startswith("exited"))

    def _show(self, s: RunState) -> None:
        status_style = {"finished": "bold green", "failed": "bold red", "stopped": "bold yellow"}.get(s.status, "bold")
        head = Text("status: ") + Text(s.status, style=status_style)
        if s.stop_requested and not s.finished:
            head.append("  (stop requested: stops at the next epoch boundary)", style="yellow")
        if s.run.get("pid"):
            head.append(f"  pid {s.run['pid']}", style="dim")
        head.append(f"\n{self.run_dir}", style="dim")
        if s.status.startswith("exited") and self.launch_log is not None:
            try:
                tail = self.launch_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-4:]
            except OSError:
                tail = []
            for line in tail:
                head.append(f"\n  {line}", style="red")
        self.head.update(head)

        last = s.last
        est = self.plan.estimate if self.plan else None
        total_steps = est.total_steps if est else None
        epochs = self.plan.hyperparameters.epochs if self.plan else None
        step = int(last.get("step", 0) or 0)
        epoch = last.get("epoch")
        self.progress_text.update(
            f"epoch {_num(epoch, '.2f')}/{epochs or '?'}   step {step}/{total_steps or '?'}"
            f"   elapsed {_num(last.get('elapsed_s'), '.0f')} s")
        if total_steps:
            done = total_steps if s.status == "finished" else min(step, total_steps)
            self.progress.update(total=total_steps, progress=done)
        elif self.ended:  # no step count to show, and nothing running: stop the "working" pulse
            self.progress.update(total=max(step, 1), progress=step)

        losses = s.losses
        self.loss_chart.data = losses
        if losses:
            self.loss_text.update(f"loss  first {losses[0]:.4f}  last {losses[-1]:.4f}  min {min(losses):.4f}"
                                  f"  ({len(losses)} logged steps)")
        measured = last.get("tokens_per_s_per_gpu")
        planned = est.tokens_per_s_per_gpu if est else None
        speed = Text("tokens/s per GPU: ")
        speed.append(_num(measured, ",.0f"), style="bold")
        if isinstance(measured, (int, float)) and planned:
            ratio = measured / planned
            speed.append(f" measured vs {planned:,.0f} planned ({ratio:.0%} of the estimate)" if ratio >= 0.01 else
                         f" measured vs {planned:,.0f} planned ({ratio:.2g}x: a different machine than planned?)")
        elif planned:
            speed.append(f" measured vs {planned:,.0f} planned")
        self.speed.update(speed)
        self._show_gate(s)

    def _show_gate(self, s: RunState) -> None:
        table = self.gate_table
        table.clear()
        base = s.gate.get("baseline") if isinstance(s.gate, dict) else None
        if isinstance(base, dict):
            table.add_row("base", "-", _num(base.get("loss")), _num(base.get("exact_match"), ".2f"),
                          _num(base.get("contains"), ".2f"), Text("baseline", style="dim"), "")
        for e in s.gate_epochs:
            score = e.get("score") or {}
            verdict = Text("PASS", style="bold green") if e.get("passed") else Text("FAIL", style="bold red")
            table.add_row(str(e.get("epoch", "?")), str(e.get("step", "-")), _num(score.get("loss")),
                          _num(score.get("exact_match"), ".2f"), _num(score.get("contains"), ".2f"), verdict,
                          "; ".join(str(r) for r in e.get("reasons") or []) or "-")

    # ------------------------------------------------------------------ actions
    def action_stop(self) -> None:
        if self.ended:
            self.notify(f"nothing to stop: the run has {self.state.status}", severity="warning")
            return
        if not self.run_dir.is_dir():
            self.notify(f"{self.run_dir}: no such run folder (not created yet, or removed)", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    request_stop(self.run_dir)
                except OSError as exc:
                    self.notify(f"could not ask the run to stop: {exc}", severity="error")
                    return
                self.notify("STOP written: the run stops cleanly at the next epoch boundary")
                self.refresh_state()

        self.app.push_screen(ConfirmScreen(f"Stop the run in {self.run_dir.name} at the next epoch boundary?"),
                             answered)

    def action_back(self) -> None:
        self.app.pop_screen()
