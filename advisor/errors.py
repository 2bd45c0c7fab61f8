"""The one error a user sees: a single line naming the field or file (and line), exit code 2."""

import difflib
import re

_INDEX = re.compile(r"\[\d+\]")


class UserError(Exception):
    """Bad input. The CLI prints ``sftplan: <message>`` on one line and exits 2; no traceback.

    ``field`` is the schema path of the bad value when there is one (``have[0].gpu``,
    ``dataset.examples``, ``approval.by``): the faces map it to their own flag or widget by a table
    (advisor/cli/fields.py, advisor/tui/planning.py). Messages never name a CLI flag. ``str()`` is
    ``'<field>: <message>'`` (or the message alone), for callers with no table. ``names_file``: the
    message already names the file and line at fault (a data file, a config.json); the faces show it as
    it is and use the field only to find the widget.
    """

    exit_code = 2

    def __init__(self, message: str, field: str | None = None, *, names_file: bool = False) -> None:
        quoted = field is not None and not names_file
        super().__init__(f"{field}: {message}" if quoted else message)
        self.message = message
        self.field = field
        self.names_file = names_file  # the message starts with the file (and line) it is about: shown as it is


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when none is close."""
    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def without_indexes(field: str) -> str:
    """'have[0].gpu' -> 'have.gpu'."""
    return _INDEX.sub("", field)


def _key(field: str, table: dict) -> str | None:
    """The key of a face's table (field -> flag, field -> widget) that answers for ``field``: list
    indexes dropped, then ever shorter prefixes ('have[0].gpu' -> 'have.gpu' -> 'have')."""
    key = without_indexes(field)
    while key:
        if key in table:
            return key
        key = key.rpartition(".")[0]
    return None


def covers(field: str, table: dict) -> bool:
    return _key(field, table) is not None


def lookup(field: str, table: dict):
    """The table's entry for ``field``: None when it has none, or says the field has no flag / widget."""
    key = _key(field, table)
    return None if key is None else table[key]
