"""Small modal screens: ask for a line of text, confirm yes/no, show help or a diff."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class PromptScreen(ModalScreen[str | None]):
    """One line of text (a path, a name); Enter accepts, Escape cancels.

    ``check(answer)`` returns why an answer cannot be used ('' = fine): the reason is shown under the
    input and the dialog stays open, so a mistyped path is an error at the prompt, not later.
    """

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, question: Text | str, default: str = "", placeholder: str = "",
                 check: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.question, self.default, self.placeholder, self.check = question, default, placeholder, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Input(self.default, placeholder=self.placeholder, id="answer")
            yield Static("", id="prompt-error", classes="field-error")
            yield Static("Enter: ok   Escape: cancel", classes="dim")

    @on(Input.Submitted, "#answer")
    def _submitted(self, event: Input.Submitted) -> None:
        answer = event.value.strip()
        problem = self.check(answer) if (self.check and answer) else ""
        if problem:
            error = self.query_one("#prompt-error", Static)
            error.update(problem)
            error.add_class("-shown")
            return
        self.dismiss(answer or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes / no; y or Enter on Yes confirms, n or Escape refuses."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: Text | str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """A scrollable text (help, a diff); Escape or q closes it."""

    BINDINGS = [Binding("escape,q", "close", "close")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="section")
            with VerticalScroll():
                yield Static(self.body, id="body")
            yield Static("Escape: close", classes="dim")

    def action_close(self) -> None:
        self.dismiss(None)


def help_text(bindings: list[tuple[str, str]]) -> Text:
    t = Text()
    for key, what in bindings:
        t.append(f"{key:>10}  ", style="bold")
        t.append(f"{what}\n")
    t.append("\nEdit any input on the left: the plan on the right is recomputed off the UI thread.\n"
             "An invalid input is marked with its reason; the last valid plan stays on screen.\n"
             "In the tier table: up/down selects a tier and shows its memory against the GPU.\n", style="dim")
    return t


def diff_text(a_name: str, b_name: str, changes: list[tuple[str, object, object]]) -> Text:
    t = Text(f"{a_name} -> {b_name}: {len(changes)} change(s)\n", style="bold")
    for path, old, new in changes:
        if old is None:
            t.append(f"+ {path}: {new}\n", style="green")
        elif new is None:
            t.append(f"- {path}: {old}\n", style="red")
        else:
            t.append(f"~ {path}: {old} -> {new}\n")
    if not changes:
        t.append("no differences in planned content\n")
    return t
