"""The footer, led by where the focus is: "[model]" then the keys (the status line says what the field takes)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Label


class FocusFooter(Footer):
    """Textual's Footer recomposes whenever the active bindings change (focus moves, a screen opens), so
    the label in front always names the focused place; the app says what to call it (``focus_place``)."""

    def compose(self) -> ComposeResult:
        place = getattr(self.app, "focus_place", lambda: "")()
        if place:
            yield Label(f" {place} ", classes="focus-place")
        yield from super().compose()
