"""SftplanApp: inputs on the left, the live plan on the right; save, approve, diff, run, attach.

Planning runs in a thread worker (``@work(thread=True)``) that posts PlanReady / PlanFailed; the UI
thread only collects the inputs and shows results. Training runs as a separate `sftplan run` process.
"""

from __future__ import annotations

import gc
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import getters, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Checkbox, Collapsible, DataTable, Header, Input, Select, Static

from advisor.architecture import preset_names
from advisor.errors import UserError
from advisor.models import Plan, PlanRequest
from advisor.planfile import approve, diff, read_plan, review_path, verify, write_plan_files
from advisor.tui.messages import PlanFailed, PlanReady
from advisor.planner import EstimateCache
from advisor.tui.planning import FieldErrors, make_plan
from advisor.tui.runfolder import is_run_dir
from advisor.tui.screens.datacheck import DataCheckScreen
from advisor.tui.screens.dialogs import ConfirmScreen, PromptScreen, TextScreen, diff_text, help_text
from advisor.tui.screens.presets import PresetScreen
from advisor.tui.screens.run import RunScreen
from advisor.tui.screens.table import ScaleTableScreen
from advisor.tui.widgets.inputs import DEFAULT_REQUEST, TEXT_FIELDS, InputsPanel, short_error
from advisor.tui.widgets.footer import FocusFooter
from advisor.tui.widgets.plan_view import PlanView


RUN_FLAGS = ("--allow-mismatch", "--dry-run")  # what the run prompt passes on to `sftplan run`


def save_plan_files(plan: Plan, path: Path) -> tuple[Plan, Path]:
    """plan.yaml and its plan.md review, through the core's one writer (advisor.planfile.write_plan_files)."""
    return write_plan_files(plan, path), review_path(path)


def approval_at_risk(path: Path, plan: Plan) -> str:
    """What saving ``plan`` over ``path`` would lose: the approval of the plan there ('' = nothing)."""
    if not path.is_file():
        return ""
    try:
        there = read_plan(path)
    except (UserError, OSError, ValueError):
        return ""
    if there.approval is None or verify(there):
        return ""
    if plan.approval is not None and plan.plan_sha256 == there.plan_sha256:
        return ""  # the same approved plan: rewriting it keeps the approval
    return f"the plan approved by {there.approval.by} at {there.approval.at} ({there.plan_sha256[:12]})"


def inputs_summary(request: PlanRequest) -> str:
    """The inputs a plan was made from, one short line (what a save writes when the form is invalid)."""
    ds = request.dataset
    parts = [request.model, f"{ds.examples:,} examples x {ds.avg_tokens:,} tokens", f"max seq {request.max_seq_len}"]
    if request.budget_usd is not None:
        parts.append(f"budget ${request.budget_usd:,.0f}")
    if request.deadline_hours is not None:
        parts.append(f"deadline {request.deadline_hours:g} h")
    if request.have:
        parts.append("owned " + ", ".join(f"{h.gpu}:{h.count}" for h in request.have))
    if request.method != "auto":
        parts.append(request.method)
    if request.goals:
        parts.append("goals " + ", ".join(request.goals))
    return "; ".join(parts)


def run_folder_problem(answer: str) -> str:
    """Why ``answer`` cannot be attached to ('' = a run folder)."""
    path = Path(answer).expanduser()
    if not path.exists():
        return f"{path}: no such folder"
    if not path.is_dir():
        return f"{path}: a file, not a run folder"
    if not is_run_dir(path):
        return f"{path}: not a run folder (no run.json or metrics.jsonl in it)"
    return ""


def key_names(fkey: str, ctrl: str | None) -> str:
    """'F2 / Ctrl+S' (or 'F12' for a key without a Ctrl alias), as help and the palette name it."""
    return f"{fkey.upper()} / Ctrl+{ctrl[-1].upper()}" if ctrl else fkey.upper()


class SftplanApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "sftplan"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    SHOW_LATENCY = True  # the "updated in N ms" figure; snapshot tests turn it off (it varies run to run)
    # (action, F-key, Ctrl alias, footer label, help / palette text). The Ctrl aliases avoid the keys
    # the text inputs use (a, e, d, k, u, w, x, c, v) and the terminal's own (h, i, j, m, z); with those
    # and the ones below taken no letter is left, so the data check has F12 alone (and the palette).
    KEYS = [
        ("help", "f1", "ctrl+g", "help", "Help: every key"),
        ("save", "f2", "ctrl+s", "save", "Save the plan (plan.yaml + plan.md review)"),
        ("approve", "f3", "ctrl+y", "approve", "Approve the saved plan (asks your name)"),
        ("diff", "f4", "ctrl+f", "diff", "Diff the plan on screen against another plan file"),
        ("run", "f5", "ctrl+r", "run", "Run the approved plan (`sftplan run` as a separate process)"),
        ("attach", "f6", "ctrl+o", "attach", "Attach to a run folder (the run view)"),
        ("sort('cost')", "f7", "ctrl+b", "by $", "Sort the tier table by cost (again: plan order)"),
        ("sort('time')", "f8", "ctrl+t", "by time", "Sort the tier table by time (again: plan order)"),
        ("presets", "f9", "ctrl+l", "models", "Pick a model preset from a searchable list"),
        ("table", "f10", "ctrl+n", "table", "By-scale table: the planner's method, tier, hours, cost by examples x model size"),
        ("datacheck", "f12", None, "check data", "Check the data file: duplicates, PII, golden leakage, length"),
    ]
    BINDINGS = [
        *(Binding(f"{fkey},{ctrl}" if ctrl else fkey, action, label,
                  key_display=ctrl.replace("ctrl+", "^") if ctrl else fkey.upper(), priority=True)
          for action, fkey, ctrl, label, _ in KEYS),
        Binding("ctrl+q", "quit", "quit", key_display="^q", priority=True),
        Binding("ctrl+p", "command_palette", "commands", key_display="^p", show=False, priority=True),
    ]
    PLAN_SCREEN_ONLY = {"save", "approve", "diff", "run", "attach", "sort", "presets", "table", "datacheck"}
    HELP = [*((key_names(fkey, ctrl), text) for _, fkey, ctrl, _, text in KEYS),
            ("Ctrl+P", "command palette: every action above, and the theme switcher"),
            ("s", "in the run view: stop at the next epoch boundary (asks first)"),
            ("Enter", "on 'rule sources': show / hide where each rule comes from"),
            ("Escape", "close a dialog / leave the run view or the table (back to the plan)"),
            ("Ctrl+Q", "quit (asks first when the plan on screen is not saved)")]

    inputs = getters.query_one("#inputs", InputsPanel)
    plan_view = getters.query_one("#plan", PlanView)
    status = getters.query_one("#status", Static)

    def __init__(self, request: PlanRequest | dict | None = None, plan: Plan | None = None,
                 plan_path: str | Path | None = None, run_dir: str | Path | None = None,
                 run_command: list[str] | None = None, calibration=None) -> None:
        super().__init__()
        self.calibration = calibration  # advisor.calibration.Calibration every plan of the session applies
        self.attach_dir = Path(run_dir) if run_dir else None
        if plan is None and self.attach_dir is not None and (self.attach_dir / "plan.yaml").is_file():
            try:  # attached to a run: behind the run view is the run's own plan, not a default one
                plan, plan_path = read_plan(self.attach_dir / "plan.yaml"), self.attach_dir / "plan.yaml"
            except (UserError, OSError):
                pass
        self.initial_request: Any = plan.request if plan else (request or DEFAULT_REQUEST)
        self.plan: Plan | None = plan
        self.plan_path: Path | None = Path(plan_path) if plan_path else None
        self.saved = plan is not None
        self.clean_sha256: str | None = plan.plan_sha256 if plan else None  # the plan as opened / last saved
        self.run_command = run_command or [sys.executable, "-m", "advisor", "run"]
        self.generation = 0
        self.shown_generation = -1
        self.requested_at: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.errors: dict[str, str] = {}
        self._errors_timer = None
        self.processes: list[subprocess.Popen] = []
        self._filling = False
        self._gc_frozen = False
        self.estimates = EstimateCache()  # this session's estimates: a keystroke re-plans from them

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield InputsPanel(preset_names(), id="inputs")
            yield PlanView(id="plan")
        yield Static("", id="status")
        yield FocusFooter(compact=True)

    def on_mount(self) -> None:
        self.watch(self.screen, "focused", self._focus_moved, init=False)
        self.inputs.model_input.focus()  # the first keystrokes go somewhere
        self._filling = True
        self.inputs.from_model(self.initial_request)
        self.call_after_refresh(self._filled)
        if self.plan is not None:
            self.plan_view.show(self.plan)
        if self.attach_dir is not None:
            self.push_screen(RunScreen(self.attach_dir))

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
            result = make_plan(data, self.estimates, self.calibration)
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
            if self.clean_sha256 is None:  # the first plan of a fresh session: nothing to lose yet
                self.clean_sha256 = self.plan.plan_sha256
            self.plan_view.show(self.plan)
        self._show_errors({})
        self.shown_generation = message.generation
        started = self.requested_at.pop(message.generation, None)
        if started is not None:  # measured once the new plan has been painted
            self.call_after_refresh(self._painted, started)
        self._update_status()

    @property
    def dirty(self) -> bool:
        """The plan on screen differs from the one opened or last saved (quitting would lose it)."""
        return self.plan is not None and not self.saved and self.plan.plan_sha256 != self.clean_sha256

    def _painted(self, started: float) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self._update_status()
        self._freeze_startup_objects()

    def _freeze_startup_objects(self) -> None:
        """Once the first plan is on screen, move everything built at start-up (widgets, styles, catalog,
        rule tables) out of the garbage collector's reach. Without it a full collection walks all of
        them every few edits, and that edit takes 200+ ms instead of ~90 (benchmarks/tui_latency.py)."""
        if not self._gc_frozen:
            self._gc_frozen = True
            gc.collect()
            gc.freeze()

    def on_unmount(self) -> None:
        if self._errors_timer is not None:  # a pending error display must not fire into a closing app
            self._errors_timer.stop()
            self._errors_timer = None
        if self._gc_frozen:
            gc.unfreeze()  # the app is gone: let a host process (tests, an embedding) collect it again

    def on_plan_failed(self, message: PlanFailed) -> None:
        if message.generation == self.generation:
            self._show_errors(message.errors)

    ERROR_DELAY_S = 0.4  # an error is shown once typing pauses: "lla" is not worth a red line

    def _show_errors(self, errors: dict[str, str]) -> None:
        """Record the errors at once (save and quit read them); show them after a pause in typing.
        Clearing is immediate: a fixed input never stays red."""
        presets = preset_names()
        errors = {fid: short_error(fid, msg, presets) for fid, msg in errors.items()}
        self.errors = errors
        if self._errors_timer is not None:
            self._errors_timer.stop()
            self._errors_timer = None
        if errors:
            self._errors_timer = self.set_timer(self.ERROR_DELAY_S, self._display_errors)
        else:
            self._display_errors()

    def _display_errors(self) -> None:
        self._errors_timer = None
        stack = self.screen_stack
        if not stack or not self.is_running:
            return  # the app is closing
        if stack[-1] is not stack[0]:  # a dialog or the run view is on top: show them once it closes
            self._errors_timer = self.set_timer(self.ERROR_DELAY_S, self._display_errors)
            return
        try:
            inputs, view = self.inputs, self.plan_view
        except NoMatches:  # the widgets are being removed: the app is closing
            return
        inputs.show_errors(self.errors)
        view.set_stale(self._invalid_summary())
        self._update_status()

    def _invalid_summary(self) -> str:
        if not self.errors:
            return ""
        names = [TEXT_FIELDS.get(fid, (fid,))[0] for fid in self.errors if fid] or ["input"]
        return f"invalid {', '.join(names)}"

    def _update_status(self) -> None:
        if self.errors and self._errors_timer is None:
            general = self.errors.get("", "")
            text = f"[b red]invalid input[/] {general or '(see the marked field)'}: showing the last valid plan"
        elif self.plan is None:
            text = "planning..."
        else:
            where = f"{self.plan_path}" if self.plan_path else "not saved"
            state = "saved" if self.saved else "unsaved changes" if self.dirty else "not changed"
            ms = f"  updated in {self.latencies_ms[-1]:.0f} ms" if self.latencies_ms and self.SHOW_LATENCY else ""
            text = f"{where} ({state}){ms}"
        hint = self._focus_hint()
        try:
            status = self.status
        except NoMatches:  # the planning screen is being torn down (a plan finished while the app quits): no line
            return
        status.update(f"{text}[dim]  |  {hint}[/]" if hint else text, layout=False)  # one line (app.tcss)

    FOCUS_HINTS = {Input: "Tab: next field", Checkbox: "Space: tick", Select: "Enter: choose",
                   DataTable: "Up/Down: a tier's detail, ^B/^T sort"}
    FIELD_HINTS = {"model": "a preset, 8B or config.json; ^L lists presets", "have": "GPU:COUNT, ...",
                   "budget_usd": "USD: 5000, 5k, $5,000", "dataset_file": "a JSONL file: measured"}

    def focus_place(self) -> str:
        """Where the focus is, in a word or two, for the footer ('' in a dialog or the run view)."""
        if len(self.screen_stack) != 1 or self.focused is None:
            return ""
        w = self.focused
        if w.id in TEXT_FIELDS:
            return TEXT_FIELDS[w.id][0]
        if w.id and w.id.startswith("goal-"):
            return f"goal {w.id[5:]}"
        names = {"tiers": "tier table", "base": "base", "method": "method", "nvidia_stack": "NVIDIA"}
        if w.id in names:
            return names[w.id]
        if type(w).__name__ == "CollapsibleTitle":
            return "rule sources"
        return w.id or type(w).__name__

    def _focus_hint(self) -> str:
        """Where the focus is and what the keys do there (the footer lists the keys themselves)."""
        if len(self.screen_stack) != 1:
            return ""
        w = self.focused
        if w is None:
            return ""
        where = w.id or type(w).__name__
        if where in self.FIELD_HINTS:
            return f"in {TEXT_FIELDS[where][0]}: {self.FIELD_HINTS[where]}; Tab: next"
        if where in TEXT_FIELDS:
            where = TEXT_FIELDS[where][0]
        elif where == "tiers":
            where = "tier table"
        for kind, hint in self.FOCUS_HINTS.items():
            if isinstance(w, kind):
                return f"in {where}: {hint}"
        if isinstance(w.parent, Collapsible) or type(w).__name__ == "CollapsibleTitle":
            return "rule sources: Enter shows / hides"
        return f"in {where}"

    def _focus_moved(self, _focused=None) -> None:
        if len(self.screen_stack) == 1 and self.is_running:  # not while the app closes
            self._update_status()

    # ------------------------------------------------------------------ keys, palette, quit
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The plan's keys act on the plan screen only: in the run view F2 must not save the plan hidden
        behind it, and a dialog's own keys come first."""
        if action in self.PLAN_SCREEN_ONLY and len(self.screen_stack) > 1:
            return False
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)  # theme switcher, keys, screenshot, quit
        if screen is not self.screen_stack[0]:  # asked from the run view or a dialog: the plan's keys are off
            return
        for action, fkey, ctrl, _, text in self.KEYS:
            yield SystemCommand(text.split(" (")[0], f"{text} [{key_names(fkey, ctrl)}]",
                                partial(self.run_action, action))

    async def action_quit(self) -> None:
        if not self.dirty:
            self.exit()
            return
        where = f"it differs from {self.plan_path}" if self.plan_path else "it was never saved"
        question = Text.assemble(("Quit without saving?\n", "bold"),
                                 f"The plan on screen ({self.plan.model.name}, {self.plan.plan_sha256[:12]}) is lost: "
                                 f"{where}. F2 saves it.")
        self.push_screen(ConfirmScreen(question), lambda yes: yes and self.exit())

    # ------------------------------------------------------------------ actions
    def action_help(self) -> None:
        self.push_screen(TextScreen("sftplan keys", help_text(self.HELP)))

    def action_presets(self) -> None:
        def picked(name: str | None) -> None:
            if name:
                self.inputs.model_input.value = name  # Input.Changed -> a new plan

        self.push_screen(PresetScreen(preset_names()), picked)

    def action_table(self) -> None:
        self.push_screen(ScaleTableScreen())

    def action_datacheck(self) -> None:
        """The data check of the form's data file (and the request's golden set), in a panel."""
        path = self.query_one("#dataset_file", Input).value.strip()
        if not path:
            self.notify("no data file in the form: type a JSONL path in 'data' first", severity="warning")
            return
        data, errors = self.inputs.to_model()
        golden = data.get("golden")
        golden = golden.get("path") if isinstance(golden, dict) else getattr(golden, "path", golden)
        max_seq_len = data.get("max_seq_len") if "max_seq_len" not in errors else None
        self.push_screen(DataCheckScreen(path, golden=golden or None, max_seq_len=max_seq_len or 2048,
                                         model=data.get("model") or None))

    def action_sort(self, mode: str) -> None:
        view = self.plan_view
        view.sort_mode = "plan" if view.sort_mode == mode else mode
        self.notify(f"tiers sorted by {view.sort_mode}", timeout=2)

    def _ask(self, question: Text | str, default: str, then) -> None:
        self.push_screen(PromptScreen(question, default), lambda answer: answer and then(answer))

    def action_save(self, then=None) -> None:
        if self.plan is None:
            self.notify("no plan yet", severity="warning")
            return
        question = Text("Save the plan to (YAML; the Markdown review goes beside it):")
        if self.errors:  # the inputs on the left are not what will be saved: say which inputs are
            question = Text.assemble(
                ("Warning: ", "bold red"), (f"{self._invalid_summary()}. ", "red"),
                "The saved plan is the last valid one, with these inputs:\n",
                (inputs_summary(self.plan.request), "bold"), "\n\n", question)
            self.notify(f"{self._invalid_summary()}: saving would write the last valid plan", severity="warning")
        self._ask(question, str(self.plan_path or "plan.yaml"), lambda path: self.confirm_save(path, then))

    def confirm_save(self, path: str | Path, then=None) -> None:
        """Saving over an approved plan with a different one loses the approval: ask first, saying so."""
        path = Path(path)
        lost = approval_at_risk(path, self.plan)
        if not lost:
            self.save_to(path, then)
            return
        question = Text.assemble(("Replace an approved plan?\n", "bold"), f"{path} holds {lost}. ",
                                 ("Saving replaces it with an unapproved plan: that approval is lost.", "bold red"))
        self.push_screen(ConfirmScreen(question), lambda yes: yes and self.save_to(path, then))

    def save_to(self, path: str | Path, then=None) -> None:
        path = Path(path)
        try:
            self.plan, md = save_plan_files(self.plan, path)
        except (UserError, OSError) as exc:
            self.notify(f"not saved: {exc}", severity="error")
            return
        self.plan_path, self.saved, self.clean_sha256 = path, True, self.plan.plan_sha256
        self.notify(f"saved {path} and {md.name}")
        self.plan_view.show(self.plan)
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
            self.plan, _ = save_plan_files(approved, self.plan_path)
        except (UserError, OSError) as exc:
            self.notify(f"not approved: {exc}", severity="error")
            return
        self.clean_sha256 = self.plan.plan_sha256
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
        self.push_screen(PromptScreen("Attach to the run folder:", "", check=run_folder_problem),
                         lambda d: d and self.push_screen(RunScreen(d)))
