"""The by-scale table view: `sftplan table`'s content (advisor/scale_table.py) as a DataTable.

Rows are the example-count bands, columns the model sizes; each cell is the planner's answer for that
band and model (method, GPU tier x count / hours, cost), the assumptions printed above. The table is
20 plans (~0.5 s of CPU, more on a loaded machine): it is built in a thread worker, never on the UI
thread; an edit while one is in flight supersedes it (the older result is dropped).
"""

from __future__ import annotations

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from advisor.errors import UserError
from advisor.scale_table import DEFAULT_AVG_TOKENS, DEFAULT_MODELS, ScaleTable, assumption_lines, cell_lines


class TableReady(Message):
    def __init__(self, table: ScaleTable, generation: int) -> None:
        super().__init__()
        self.table, self.generation = table, generation


class TableFailed(Message):
    def __init__(self, error: str, generation: int) -> None:
        super().__init__()
        self.error, self.generation = error, generation


def parse_tokens(text: str) -> int:
    """The tokens-per-example input: a whole number >= 1 (commas and a k suffix allowed: 2k, 1,024)."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    scale = 1000 if t.endswith("k") else 1
    try:
        n = int(float(t[:-1] if scale > 1 else t) * scale)
    except ValueError:
        raise UserError(f"{text.strip()!r} is not a number of tokens (e.g. 512 or 2k)", field="tokens") from None
    if n < 1:
        raise UserError(f"{text.strip()!r}: at least 1 token per example", field="tokens")
    return n


class ScaleTableScreen(Screen[None]):
    """The guide's by-scale table, from the planner. Enter in an input rebuilds it; Escape goes back."""

    BINDINGS = [Binding("escape", "back", "back to plan"),
                Binding("question_mark", "app.help", "help", show=False)]

    models_input = getters.query_one("#table-models", Input)
    tokens_input = getters.query_one("#table-tokens", Input)
    error_line = getters.query_one("#table-error", Static)
    assumptions = getters.query_one("#table-assumptions", Static)
    grid = getters.query_one("#scale-table", DataTable)
    state_line = getters.query_one("#table-state", Static)

    def __init__(self, catalog=None, models: list[str] | None = None, avg_tokens: int = DEFAULT_AVG_TOKENS) -> None:
        super().__init__()
        self.catalog = catalog
        self.initial_models = list(models or DEFAULT_MODELS)
        self.initial_tokens = avg_tokens
        self.generation = 0
        self.shown_generation = -1
        self.table: ScaleTable | None = None  # the table on screen
        self.error = ""  # the one-line error on screen ('' = none)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(classes="field table-field"):
            yield Label("models", classes="field-label")
            yield Input(",".join(self.initial_models), placeholder="1b,8b,70b,405b", id="table-models", compact=True)
        with Horizontal(classes="field table-field"):
            yield Label("tokens", classes="field-label")
            yield Input(str(self.initial_tokens), placeholder="tokens per example", id="table-tokens", compact=True)
        yield Static("", id="table-error", classes="field-error")
        yield Static("", id="table-assumptions", classes="dim")
        yield DataTable(id="scale-table", cursor_type="cell", zebra_stripes=True)
        yield Static("", id="table-state", classes="dim")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "sftplan by-scale table"
        self.sub_title = "each cell: the planner's method, GPU tier x count, hours, cost"
        self.models_input.focus()
        self.rebuild()

    # ------------------------------------------------------------------ building
    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.rebuild()

    def rebuild(self) -> None:
        """Read the inputs; a bad one is a one-line error naming it (the last good table stays shown)."""
        self.generation += 1
        try:
            from advisor.scale_table import parse_models

            models = parse_models(self.models_input.value)
            tokens = parse_tokens(self.tokens_input.value)
        except UserError as exc:
            self._show_error(str(exc))
            self.shown_generation = self.generation  # answered: nothing to build
            return
        self._show_error("")
        self.state_line.update("building the table (20 plans, off the UI thread)...")
        self._build(models, tokens, self.generation)

    @work(thread=True, exclusive=True, group="scale-table")
    def _build(self, models: list[str], tokens: int, generation: int) -> None:
        from advisor.scale_table import build

        try:
            from advisor.catalog import load_catalog  # cached: the planning session's own catalog

            table = build(self.catalog or load_catalog(), models=models, avg_tokens=tokens)
        except UserError as exc:  # named by this view's input: a model entry, or the tokens per example
            label = {"models": "models", "model": "models", "dataset.avg_tokens": "tokens"}.get(exc.field or "")
            self.post_message(TableFailed(f"{label}: {exc.message}" if label else str(exc), generation))
            return
        except Exception as exc:  # noqa: BLE001 - shown on the error line; the view keeps going
            self.post_message(TableFailed(f"{type(exc).__name__}: {exc}", generation))
            return
        self.post_message(TableReady(table, generation))

    def on_table_ready(self, message: TableReady) -> None:
        if message.generation != self.generation:
            return  # the inputs changed since: a newer table is on its way
        self.show(message.table)
        self.shown_generation = message.generation

    def on_table_failed(self, message: TableFailed) -> None:
        if message.generation == self.generation:
            self._show_error(message.error)
            self.shown_generation = message.generation

    def _show_error(self, error: str) -> None:
        self.error = error.splitlines()[0] if error else ""
        self.error_line.update(self.error)
        self.error_line.set_class(bool(self.error), "-shown")
        for widget, field in ((self.models_input, "models"), (self.tokens_input, "tokens")):
            widget.set_class(self.error.startswith(f"{field}:"), "-invalid")
        if self.error:
            self.state_line.update("invalid input: showing the last table built" if self.table else "")

    def show(self, t: ScaleTable) -> None:
        self.table = t
        self.assumptions.update("\n".join(assumption_lines(t)))
        grid = self.grid
        grid.clear(columns=True)
        grid.add_column("examples", key="examples")
        for model, name in zip(t.models, t.model_names):
            grid.add_column(name, key=model)
        for (label, _), row in zip(t.rows, t.cells):
            cells = [Text("\n".join(cell_lines(c)), style="" if c.meets_constraints else "yellow") for c in row]
            grid.add_row(Text(label, style="bold"), *cells, height=None, key=label)
        self.state_line.update(f"{len(t.rows)} x {len(t.models)} plans in {t.elapsed_s:.1f} s; "
                               "Enter in an input rebuilds, Escape: back to the plan")

    def action_back(self) -> None:
        self.dismiss(None)
