"""SftplanApp: inputs on the left, the live plan on the right; save, approve, diff, run, attach.

Planning runs in a thread worker (``@work(thread=True)``) that posts PlanReady / PlanFailed; the UI
thread only collects the inputs and shows results. Training runs as a separate `sftplan run` process.
"""

from __future__ import annotations

import gc
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from textual import getters, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Checkbox, Footer, Header, Input, Select, Static

from advisor.architecture import preset_names
from advisor.errors import UserError
from advisor.models import Plan, PlanRequest
from advisor.planfile import approve, diff, read_plan, verify, write_plan
from advisor.tui.messages import PlanFailed, PlanReady
from advisor.tui.planning import FieldErrors, make_plan
from advisor.tui.screens.dialogs import PromptScreen, TextScreen, diff_text, help_text
from advisor.tui.screens.presets import PresetScreen
from advisor.tui.screens.run import RunScreen
from advisor.tui.widgets.inputs import DEFAULT_REQUEST, InputsPanel
from advisor.tui.widgets.plan_view import PlanView


RUN_FLAGS = ("--allow-mismatch", "--dry-run")  # what the run prompt passes on to `sftplan run`


def write_review(plan: Plan, path: Path) -> Path:
    """plan.yaml's Markdown review beside it (advisor.render.to_markdown)."""
    from advisor.render import to_markdown

    md = path.with_suffix(".md")
    tmp = md.with_name(f".{md.name}.tmp")
    tmp.write_text(to_markdown(plan), encoding="utf-8")
    os.replace(tmp, md)
    return md


class SftplanApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "sftplan"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("f1", "help", "help", priority=True),
        Binding("f2", "save", "save", priority=True),
        Binding("f3", "approve", "approve", priority=True),
        Binding("f4", "diff", "diff", priority=True),
        Binding("f5", "run", "run", priority=True),
        Binding("f6", "attach", "attach", priority=True),
        Binding("f7", "sort('cost')", "by $", priority=True),
        Binding("f8", "sort('time')", "by time", priority=True),
        Binding("f9", "presets", "models", priority=True),
        Binding("ctrl+q", "quit", "quit", priority=True, show=False),
    ]
    HELP = [("F1", "this help"), ("F2", "save the plan (plan.yaml + plan.md review)"),
            ("F3", "approve the saved plan (asks your name)"), ("F4", "diff against another plan file"),
            ("F5", "run the approved plan: `sftplan run PLAN --out RUN_DIR` as a separate process"),
            ("F6", "attach to a run folder (run view)"), ("F9", "pick a model preset from a searchable list"), ("F7 / F8", "sort the tier table by cost / by time"),
            ("s", "in the run view: stop at the next epoch boundary (asks first)"),
            ("Escape", "close a dialog / leave the run view"), ("Ctrl+Q", "quit")]

    inputs = getters.query_one("#inputs", InputsPanel)
    plan_view = getters.query_one("#plan", PlanView)
    status = getters.query_one("#status", Static)

    def __init__(self, request: PlanRequest | dict | None = None, plan: Plan | None = None,
                 plan_path: str | Path | None = None, run_dir: str | Path | None = None,
                 run_command: list[str] | None = None, cursor_blink: bool = True,
                 show_latency: bool = True) -> None:
        super().__init__()
        self.initial_request: Any = plan.request if plan else (request or DEFAULT_REQUEST)
        self.plan: Plan | None = plan
        self.plan_path: Path | None = Path(plan_path) if plan_path else None
        self.saved = plan is not None
        self.attach_dir = Path(run_dir) if run_dir else None
        self.run_command = run_command or [sys.executable, "-m", "advisor", "run"]
        self.cursor_blink = cursor_blink
        self.show_latency = show_latency  # off in snapshot tests: the figure varies run to run
        self.generation = 0
        self.shown_generation = -1
        self.requested_at: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.errors: dict[str, str] = {}
        self.processes: list[subprocess.Popen] = []
        self._filling = False
        self._gc_frozen = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield InputsPanel(preset_names(), id="inputs")
            yield PlanView(id="plan")
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if not self.cursor_blink:
            for inp in self.query(Input):
                inp.cursor_blink = False
        self._filling = True
        self.inputs.from_model(self.initial_request)
        self.call_after_refresh(self._filled)
        if self.plan is not None:
            self.plan_view.show(self.plan)
        if self.attach_dir is not None:
            self.push_screen(RunScreen(self.attach_dir, standalone=True))

    def _filled(self) -> None:
        self._filling = False
        if self.plan is None:
            self.request_plan()

    # ------------------------------------------------------------------ planning
    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _input_changed(self, event) -> None:
        if not self._filling and self.inputs in event.control.ancestors:
            self.request_plan()

    def request_plan(self) -> None:
        data, errors = self.inputs.to_model()
        self.generation += 1
        if errors:
            self._show_errors(errors)
            return
        self.requested_at[self.generation] = time.perf_counter()
        self._plan_worker(data, self.generation)

    @work(thread=True, exclusive=True, group="plan")
    def _plan_worker(self, data: dict, generation: int) -> None:
        started = time.perf_counter()
        try:
            result = make_plan(data)
        except FieldErrors as exc:
            self.post_message(PlanFailed(exc.errors, generation))
            return
        except Exception as exc:  # noqa: BLE001 - shown at the field-less error line, the UI keeps going
            self.post_message(PlanFailed({"": f"{type(exc).__name__}: {exc}"}, generation))
            return
        self.post_message(PlanReady(result, generation, time.perf_counter() - started))

    def on_plan_ready(self, message: PlanReady) -> None:
        if message.generation != self.generation:
            return  # inputs changed since: a newer plan is on its way
        same = self.plan is not None and self.plan.plan_sha256 == message.plan.plan_sha256
        if not same:
            self.plan = message.plan
            self.saved = False
            self.plan_view.show(self.plan)
        self._show_errors({})
        self.shown_generation = message.generation
        started = self.requested_at.pop(message.generation, None)
        if started is not None:  # measured once the new plan has been painted
            self.call_after_refresh(self._painted, started)
        self._update_status()

    def _painted(self, started: float) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self._update_status()
        self._freeze_startup_objects()

    def _freeze_startup_objects(self) -> None:
        """Once the first plan is on screen, move everything built at start-up (widgets, styles, catalog,
        pydantic schemas) out of the garbage collector's reach. Without it a full collection walks all of
        them every few edits, and that edit takes 200+ ms instead of ~90 (benchmarks/tui_latency.py)."""
        if not self._gc_frozen:
            self._gc_frozen = True
            gc.collect()
            gc.freeze()

    def on_unmount(self) -> None:
        if self._gc_frozen:
            gc.unfreeze()  # the app is gone: let a host process (tests, an embedding) collect it again

    def on_plan_failed(self, message: PlanFailed) -> None:
        if message.generation == self.generation:
            self._show_errors(message.errors)

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        self.inputs.show_errors(errors)
        self._update_status()

    def _update_status(self) -> None:
        if self.errors:
            general = self.errors.get("", "")
            text = f"[b red]invalid input[/] {general or '(see the marked field)'}: showing the last valid plan"
        elif self.plan is None:
            text = "planning..."
        else:
            where = f"{self.plan_path}" if self.plan_path else "not saved"
            state = "saved" if self.saved else "unsaved changes"
            ms = f"  updated in {self.latencies_ms[-1]:.0f} ms" if self.latencies_ms and self.show_latency else ""
            text = f"{where} ({state}){ms}"
        self.status.update(text, layout=False)  # one line, fixed height (app.tcss)

    # ------------------------------------------------------------------ actions
    def action_help(self) -> None:
        self.push_screen(TextScreen("sftplan keys", help_text(self.HELP)))

    def action_presets(self) -> None:
        def picked(name: str | None) -> None:
            if name:
                self.inputs.model_input.value = name  # Input.Changed -> a new plan

        self.push_screen(PresetScreen(preset_names()), picked)

    def action_sort(self, mode: str) -> None:
        view = self.plan_view
        view.sort_mode = "plan" if view.sort_mode == mode else mode
        self.notify(f"tiers sorted by {view.sort_mode}", timeout=2)

    def _ask(self, question: str, default: str, then) -> None:
        self.push_screen(PromptScreen(question, default), lambda answer: answer and then(answer))

    def action_save(self, then=None) -> None:
        if self.plan is None:
            self.notify("no plan yet", severity="warning")
            return
        self._ask("Save the plan to (YAML; the Markdown review goes beside it):",
                  str(self.plan_path or "plan.yaml"), lambda path: self.save_to(path, then))

    def save_to(self, path: str | Path, then=None) -> None:
        path = Path(path)
        try:
            self.plan = write_plan(self.plan, path)
            md = write_review(self.plan, path)
        except (UserError, OSError) as exc:
            self.notify(f"not saved: {exc}", severity="error")
            return
        self.plan_path, self.saved = path, True
        self.notify(f"saved {path} and {md.name}")
        self._update_status()
        if then:
            then()

    def action_approve(self) -> None:
        if self.plan is None:
            self.notify("no plan yet", severity="warning")
            return
        if not self.saved or self.plan_path is None:
            self.action_save(then=self.action_approve)
            return
        self._ask(f"Approve {self.plan_path.name} ({self.plan.plan_sha256[:12]}) as (your name):", "", self.approve_as)

    def approve_as(self, name: str) -> None:
        try:
            approved = approve(read_plan(self.plan_path), name)
            if approved.plan_sha256 != (self.plan.plan_sha256 if self.plan else None):
                raise UserError("the saved file differs from the plan on screen; save again first")
            self.plan = write_plan(approved, self.plan_path)
            write_review(self.plan, self.plan_path)
        except (UserError, OSError) as exc:
            self.notify(f"not approved: {exc}", severity="error")
            return
        self.plan_view.show(self.plan)
        self.notify(f"approved by {name}: {self.plan_path}")
        self._update_status()

    def action_diff(self) -> None:
        if self.plan is None:
            return
        self._ask("Diff the plan on screen against the plan file:", "", self.show_diff)

    def show_diff(self, other: str) -> None:
        try:
            changes = diff(read_plan(other), self.plan)
        except (UserError, OSError) as exc:
            self.notify(f"cannot diff: {exc}", severity="error")
            return
        self.push_screen(TextScreen(f"diff {other} -> on screen", diff_text(other, "on screen", changes)))

    def action_run(self) -> None:
        if self.plan is None or self.plan_path is None or not self.saved:
            self.notify("save and approve the plan first (F2, F3)", severity="warning")
            return
        reason = verify(read_plan(self.plan_path))
        if reason:
            self.notify(f"cannot run: {reason}", severity="error")
            return
        default = self.plan_path.parent / f"run-{self.plan.plan_sha256[:12]}"
        self._ask("Run folder [--allow-mismatch] (training starts as a separate `sftplan run` process):",
                  str(default), self._run_answer)

    def _run_answer(self, answer: str) -> None:
        words = shlex.split(answer)
        flags = [w for w in words[1:] if w in RUN_FLAGS]
        if len(flags) != len(words) - 1:
            self.notify(f"run: only {', '.join(RUN_FLAGS)} may follow the run folder", severity="error")
            return
        self.start_run(words[0], flags)

    def start_run(self, run_dir: str | Path, flags: list[str] | None = None) -> None:
        run_dir = Path(run_dir)
        argv = [*self.run_command, str(self.plan_path), "--out", str(run_dir), *(flags or [])]
        log = run_dir.parent / f"{run_dir.name}.tui-launch.log"
        try:
            with open(log, "ab") as fh:
                proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        except OSError as exc:
            self.notify(f"could not start: {exc}", severity="error")
            return
        self.processes.append(proc)
        self.notify(f"started pid {proc.pid}: sftplan run ... --out {run_dir} (output in {log.name})")
        self.push_screen(RunScreen(run_dir, process=proc, log=log))

    def action_attach(self) -> None:
        self._ask("Attach to the run folder:", "", lambda d: self.push_screen(RunScreen(d)))
