"""Safe YAML in and out: atomic writes, and validation errors that name the file, line and field.

pydantic (and tempfile) are imported only inside the functions that need them: the catalog loader
uses this module on `sftplan estimate`'s path, which must start fast and without pydantic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from advisor.errors import UserError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from advisor.specs import SpecError

M = TypeVar("M", bound="BaseModel")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename: the file is whole or untouched."""
    import tempfile  # here, not at the top: readers such as `sftplan estimate` never write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the node at ``loc`` (a pydantic error location) in a composed YAML tree."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def _where(source: str, root: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    """'<source>:<line>' of the node at ``loc``, or just the source when the line is unknown."""
    line = _line_of(root, loc) if root is not None else None
    return f"{source}:{line}" if line else source


def field_path(loc: tuple[Any, ...]) -> str:
    """('have', 0, 'gpu') -> 'have[0].gpu': the schema path every UserError and message uses."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validation_errors(err: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each problem pydantic found, in its order; a scalar input is quoted back."""
    out = []
    for e in err.errors():
        msg, given = e["msg"].removeprefix("Value error, "), e.get("input")
        if isinstance(given, (bool, int, float, str)) and not isinstance(given, str) or (isinstance(given, str) and len(given) < 60):
            msg += f", got {given!r}"
        out.append((field_path(tuple(e.get("loc", ()))), msg))
    return out


def user_error(err: ValidationError) -> UserError:
    """The first problem as a UserError on its field (+ how many more): the one validation-error formatter."""
    problems = validation_errors(err)
    field, message = problems[0]
    more = len(problems) - 1
    extra = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    exc = UserError(message + extra, field=None if field == "(top level)" else field)
    exc.problems = problems  # every (field, message): the TUI marks each field
    return exc


def format_error(source: str, root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    """The one formatter of a bad value in a file: '<source>:<line>: <field path>: <message>'."""
    return f"{_where(source, root, loc)}: {field_path(loc)}: {message}"


def format_validation_error(err: ValidationError, source: str, root: yaml.Node | None = None) -> str:
    """A pydantic error, first problem (+ how many more), through format_error."""
    return format_error(source, root, tuple(err.errors()[0].get("loc", ())), user_error(err).message)


def format_spec_error(err: SpecError, source: str, root: yaml.Node | None = None, loc: tuple[Any, ...] = ()) -> str:
    """A SpecError raised while building the value at ``loc`` (its path in the composed YAML tree ``root``,
    e.g. ('gpus', 2)), through format_error."""
    if err.field != "(top level)":
        loc = (*loc, *err.field.split("."))
    return format_error(source, root, loc, err.reason)


def load_model_yaml(path: str | Path, model: type[M]) -> M:
    """Read ``path`` with safe YAML and validate it as ``model``; any problem is a one-line UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(path), root)) from None
