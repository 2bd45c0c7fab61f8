"""Safe YAML in and out: atomic writes, and validation errors that name the file, line and field."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from advisor.errors import UserError
from advisor.specs import SpecError

M = TypeVar("M")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def writable_file_path(path: str | Path) -> Path:
    """``path`` as a file to be written, its folder created; a folder (or an empty name) is bad input, not a crash
    inside the rename."""
    if not str(path).strip():
        raise UserError("output path is empty: give a file name")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def temp_file_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new temp file in ``path``'s folder with the permissions the renamed file should have: the
    replaced file's own, or what a plain open() gives a new file under the umask (mkstemp's 0600 would leave a
    plan unreadable to the reviewer on a shared host)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:  # no file yet
        mode = 0o666 & ~_umask()
    os.fchmod(fd, mode)
    return fd, tmp


def _umask() -> int:
    """The process umask, read without setting it where Linux shows it (os.umask's set-and-restore is not safe while
    another thread, e.g. a TUI worker, creates files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_lines(path: str | Path, lines: Iterable[bytes]) -> None:
    """Stream ``lines`` to a temp file beside ``path``, fsync, rename: the file is whole or untouched. Every atomic
    write (plans, calibrations, run records, the dedup / redact copies) goes through here."""
    path = writable_file_path(path)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            for line in lines:
                fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """``text`` as UTF-8, atomically (atomic_write_lines)."""
    atomic_write_lines(path, (text.encode("utf-8"),))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the node at ``loc`` (('have', 0, 'gpu')) in a composed YAML tree."""
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


def field_loc(field: str) -> tuple[Any, ...]:
    """'have[0].gpu' -> ('have', 0, 'gpu'): the inverse of field_path."""
    if field == "(top level)":
        return ()
    return tuple(int(index) if index else name for name, index in _PART.findall(field))


def format_error(source: str, root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    """The one formatter of a bad value in a file: '<source>:<line>: <field path>: <message>'."""
    return f"{_where(source, root, loc)}: {field_path(loc)}: {message}"


def format_spec_error(err: SpecError, source: str, root: yaml.Node | None = None, loc: tuple[Any, ...] = ()) -> str:
    """A SpecError raised while building the value at ``loc`` (its path in the composed YAML tree ``root``,
    e.g. ('gpus', 2)), through format_error: the one formatter of a schema error in a file."""
    return format_error(source, root, (*loc, *field_loc(err.field)), err.reason)


def load_model_yaml(path: str | Path, model: type[M], hand_written: bool = False) -> M:
    """Read ``path`` with safe YAML and validate it as ``model`` (``from_dict``); any problem is a one-line
    UserError naming the file, the line and the field. ``hand_written``: as load_yaml_mapping."""
    data, root = load_yaml_mapping(path, hand_written)
    return from_mapping(model, data, str(path), root)


def from_mapping(model: type[M], data: dict, source: str, root: yaml.Node | None) -> M:
    """``model.from_dict(data)`` for the mapping read from ``source`` (composed as ``root``); a SpecError
    becomes a one-line UserError naming the file, the line and the field."""
    try:
        return model.from_dict(data)
    except SpecError as exc:
        raise UserError(format_spec_error(exc, source, root)) from None


class _HandWrittenLoader(yaml.SafeLoader):
    """SafeLoader that also reads a number written with an exponent and no dot (1e-5, 2E3) as a number, as YAML
    1.2 and the CLI's flags do; PyYAML's YAML 1.1 resolver reads it as a string, so `learning_rate: 1e-5` was
    refused as 'not a number'. Only for files people write (requests, deploy results): what sftplan writes
    itself is read back with the resolver it was written for."""


_HandWrittenLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))


class HandWrittenDumper(yaml.SafeDumper):
    """SafeDumper that quotes every string _HandWrittenLoader would read as something else (a name such as 1e5):
    a file sftplan writes for people to edit, and reads back as hand-written, reads back as it was written."""


HandWrittenDumper.yaml_implicit_resolvers = {k: list(v) for k, v in _HandWrittenLoader.yaml_implicit_resolvers.items()}


def load_yaml_mapping(path: str | Path, hand_written: bool = False) -> tuple[dict, yaml.Node | None]:
    """(the mapping in ``path``, its composed YAML tree for line numbers); a problem is a one-line UserError.
    ``hand_written``: read 1e-5 as a number (_HandWrittenLoader)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; give the YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        loader = _HandWrittenLoader if hand_written else yaml.SafeLoader
        root = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    duplicate = _first_duplicate_key(root)
    if duplicate is not None:
        key, line, first = duplicate
        raise UserError(f"{path}:{line}: {key!r} is given twice (first on line {first}); YAML would keep only the "
                        "last: say it once")
    return data, root


def _first_duplicate_key(root: yaml.Node | None) -> tuple[str, int, int] | None:
    """(key, its line, the line it was first given on) of the first mapping key given twice anywhere in the
    composed tree: safe_load keeps the last silently (a request naming `model:` twice plans the second)."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen:
                        return k.value, k.start_mark.line + 1, seen[k.value]
                    seen[k.value] = k.start_mark.line + 1
                stack.append(v)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return None
