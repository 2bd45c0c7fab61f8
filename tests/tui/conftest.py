import pytest
from textual.widgets import Input


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch):
    """A blinking cursor makes screenshots differ run to run and wakes the app twice a second: off in
    every test (the app itself has no switch for it)."""
    original = Input.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.cursor_blink = False

    monkeypatch.setattr(Input, "__init__", init)
