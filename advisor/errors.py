"""The one error a user sees: a single line naming the field or file (and line), exit code 2."""


class UserError(Exception):
    """Bad input. The CLI prints ``sftplan: <message>`` on one line and exits 2; no traceback."""

    exit_code = 2


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(name.lower(), choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
