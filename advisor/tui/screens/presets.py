"""A searchable list of the model presets (type to filter, Enter picks); sizes from advisor.architecture."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from advisor.architecture import param_count, resolve_model


def preset_rows(names: list[str]) -> list[tuple[str, str]]:
    """(preset id, 'id  8.0B  llama') for each preset."""
    rows = []
    for name in names:
        spec = resolve_model(name)
        rows.append((name, f"{name:<16} {param_count(spec) / 1e9:6.1f}B  {spec.family}"))
    return rows


class PresetScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "cancel"),
                Binding("down", "move(1)", "next", show=False), Binding("up", "move(-1)", "previous", show=False),
                Binding("pagedown", "move(10)", show=False), Binding("pageup", "move(-10)", show=False)]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.rows = preset_rows(names)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Model preset", classes="section", id="preset-title")
            yield Static("type to filter, Up/Down to move, Enter picks (or type a size such as 8B in the form)",
                         classes="dim")
            yield Input(placeholder="filter", id="filter")
            yield OptionList(*(Option(text, id=name) for name, text in self.rows), id="presets")
            yield Static("Enter: pick   Escape: cancel", classes="dim")

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        words = event.value.lower().split()
        options = self.query_one("#presets", OptionList)
        options.clear_options()
        options.add_options([Option(text, id=name) for name, text in self.rows if all(w in text.lower() for w in words)])
        if options.option_count:
            options.highlighted = 0

    @on(Input.Submitted, "#filter")
    def _submitted(self) -> None:
        options = self.query_one("#presets", OptionList)
        if options.highlighted is not None:
            self.dismiss(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected, "#presets")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        """Up / Down in the filter move the list's highlight (the filter keeps the focus)."""
        options = self.query_one("#presets", OptionList)
        if not options.option_count:
            return
        current = options.highlighted if options.highlighted is not None else -1
        options.highlighted = max(0, min(options.option_count - 1, current + step))

    def action_cancel(self) -> None:
        self.dismiss(None)
