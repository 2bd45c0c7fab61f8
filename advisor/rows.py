"""The one JSONL row reader, for `sftplan plan --dataset/--golden` and `sftplan run` alike. Pure, no torch.

Training formats (one JSON object per line):

- OpenAI ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``; at least
  one user and one assistant message, the last message from the assistant.
- ``{"prompt": "...", "response": "..."}`` or ``{"prompt": "...", "completion": "..."}``.
- alpaca ``{"instruction": "...", "input": "...", "output": "..."}`` (``input`` may be empty or
  absent; when present it follows the instruction after a blank line, as in the alpaca template).

The prompt/response and alpaca formats also accept an optional ``"system"`` string. Besides a
format's own keys a row may carry ``"id"`` and ``"metadata"`` (ignored); any other key is an error
(a misspelt ``"inptu"`` must not be dropped silently), and so is any key of a message other than
``role`` and ``content``. Golden rows: ``{"prompt", "expected"}`` or ``{"messages"}`` ending with the
expected assistant answer.

Reading (``iter_jsonl``) streams the file: lines are split on ``b"\\n"`` only (a valid line holding
U+2028, U+0085 or a form feed inside a string stays one line; ``str.splitlines`` would split it), a
line longer than ``max_row_bytes`` is refused by file:line without being held in memory, a UTF-8
byte-order mark is skipped at the start of the file and refused anywhere else, blank lines are
counted (line numbers are the file's) and skipped. A key or string holding a lone surrogate escape
(``"\\ud800"``: valid JSON, but no UTF-8 writer or tokenizer accepts it) makes the row bad, and so does a
key given twice in one object (JSON would keep the last silently). Every bad row is reported; none is dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from advisor.errors import UserError

T = TypeVar("T")

ROLES = ("system", "user", "assistant")
MAX_ROW_BYTES = 1 << 20   # 1 MiB: far above any sane training row, far below what breaks a reader
BOM = b"\xef\xbb\xbf"
META_KEYS = frozenset({"id", "metadata"})
FORMAT_KEYS = {"messages": frozenset({"messages"}),
               "prompt": frozenset({"prompt", "response", "completion", "system"}),
               "alpaca": frozenset({"instruction", "input", "output", "system"})}
GOLDEN_KEYS = {"messages": frozenset({"messages"}), "prompt": frozenset({"prompt", "expected"})}
MESSAGE_KEYS = frozenset({"role", "content"})
_SHOWN_BAD = 10  # line numbers of further bad rows named in the error; the count says how many more
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # the only way a decoded line can hold a lone surrogate

Messages = list[dict[str, str]]


def _unknown(row: dict, allowed: frozenset) -> str | None:
    extra = sorted(k for k in row if k not in allowed and k not in META_KEYS)
    if not extra:
        return None
    import difflib

    hints = []
    for k in extra:
        close = difflib.get_close_matches(k, sorted(allowed), n=1, cutoff=0.6)
        hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return (f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(hints)}; allowed: "
            f"{', '.join(sorted(allowed | META_KEYS))}")


def _nonempty_str(row: dict, key: str) -> str | None:
    """The reason ``row[key]`` is not a non-empty string, or None."""
    value = row.get(key)
    if not isinstance(value, str):
        return f"'{key}' must be a string (got {type(value).__name__})"
    if not value.strip():
        return f"'{key}' is empty"
    return None


def _system(row: dict) -> tuple[Messages, str | None]:
    if "system" not in row:
        return [], None
    if not isinstance(row["system"], str):
        return [], "'system' must be a string"
    return ([{"role": "system", "content": row["system"]}] if row["system"].strip() else []), None


def _messages(msgs: Any) -> Messages | str:
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty list of {role, content} objects"
    out: Messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"messages[{i}] must be an object with 'role' and 'content'"
        extra = sorted(k for k in m if k not in MESSAGE_KEYS)
        if extra:
            return f"messages[{i}] has unknown key(s) {', '.join(map(repr, extra))}; allowed: content, role"
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            return f"messages[{i}].role must be one of {', '.join(ROLES)} (got {role!r})"
        if not isinstance(content, str):
            return f"messages[{i}].content must be a string (got {type(content).__name__})"
        if role != "system" and not content.strip():
            return f"messages[{i}] ({role}) has empty content"
        if role == "system" and i != 0:
            return f"messages[{i}]: a system message may only come first"
        out.append({"role": role, "content": content})
    return out


def _from_messages(row: dict) -> Messages | str:
    out = _messages(row["messages"])
    if isinstance(out, str):
        return out
    roles = [m["role"] for m in out]
    if "user" not in roles:
        return "'messages' has no user message"
    if roles[-1] != "assistant":
        return f"the last message must be from the assistant (got {roles[-1]!r}); nothing to learn after it"
    return out


def _from_prompt(row: dict) -> Messages | str:
    answers = [k for k in ("response", "completion") if k in row]
    if len(answers) != 1:
        return ("'prompt' needs exactly one of 'response' or 'completion'" if not answers
                else "both 'response' and 'completion' given; keep one")
    for key in ("prompt", answers[0]):
        if why := _nonempty_str(row, key):
            return why
    system, why = _system(row)
    if why:
        return why
    return system + [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[answers[0]]}]


def _from_alpaca(row: dict) -> Messages | str:
    for key in ("instruction", "output"):
        if why := _nonempty_str(row, key):
            return why
    extra = row.get("input", "")
    if extra is None:
        extra = ""
    if not isinstance(extra, str):
        return f"'input' must be a string (got {type(extra).__name__})"
    system, why = _system(row)
    if why:
        return why
    user = row["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    return system + [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def normalize_row(row: Any) -> Messages | str:
    """A training row as a chat message list, or the one-phrase reason it is bad."""
    if not isinstance(row, dict):
        return f"expected a JSON object (got {type(row).__name__})"
    kinds = [k for k, present in (("messages", "messages" in row), ("prompt", "prompt" in row),
                                   ("alpaca", "instruction" in row or "output" in row)) if present]
    if len(kinds) > 1:
        return f"ambiguous row: has keys of several formats ({', '.join(kinds)})"
    if not kinds:
        if "response" in row or "completion" in row:
            return "'response'/'completion' without 'prompt'"
        return ("unknown format: expected 'messages', 'prompt' + 'response'/'completion', "
                "or 'instruction' (+ 'input') + 'output'")
    if why := _unknown(row, FORMAT_KEYS[kinds[0]]):
        return why
    return {"messages": _from_messages, "prompt": _from_prompt, "alpaca": _from_alpaca}[kinds[0]](row)


def normalize_golden_row(row: Any) -> tuple[Messages, str] | str:
    """A golden row as (the conversation up to the answer, the expected answer), or the reason it is bad."""
    if not isinstance(row, dict):
        return "expected a JSON object"
    if "messages" in row:
        if why := _unknown(row, GOLDEN_KEYS["messages"]):
            return why
        msgs = _messages(row["messages"])
        if isinstance(msgs, str):
            return msgs
        if len(msgs) < 2:
            return "'messages' must be a list of at least 2 messages (the last one the expected assistant answer)"
        if msgs[-1]["role"] != "assistant":
            return f"the last message must be the expected assistant answer (found role '{msgs[-1]['role']}')"
        return msgs[:-1], msgs[-1]["content"]
    if "prompt" in row or "expected" in row:
        if why := _unknown(row, GOLDEN_KEYS["prompt"]):
            return why
        prompt, expected = row.get("prompt"), row.get("expected")
        if not isinstance(prompt, str) or not prompt.strip():
            return "'prompt' must be a non-empty string"
        if not isinstance(expected, str) or not expected.strip():
            return "'expected' must be a non-empty string"
        return [{"role": "user", "content": prompt}], expected
    return "expected 'prompt' + 'expected', or 'messages' ending with the assistant's answer"


def _lone_surrogate(text: str) -> int | None:
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return ord(text[exc.start])


_NOT_UTF8 = ": not valid Unicode, cannot be encoded as UTF-8"


def _unencodable(value: Any) -> str | None:
    """The reason a key or string anywhere in a parsed row cannot be written as UTF-8 (a lone surrogate
    escape such as ``"\\ud800"``: json accepts it, every encoder and tokenizer refuses it), or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # no recursion: the depth json.loads allowed stays off Python's stack
        where, v = stack.pop()
        if isinstance(v, str) and (ch := _lone_surrogate(v)) is not None:
            return f"{repr(where) if where else 'the row'} holds a lone surrogate \\u{ch:04x}{_NOT_UTF8}"
        if isinstance(v, dict):
            for k, x in v.items():
                path = f"{where}.{k}" if where else k
                if (ch := _lone_surrogate(k)) is not None:
                    return f"key {path!r} holds a lone surrogate \\u{ch:04x}{_NOT_UTF8}"
                stack.append((path, x))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object hook: a key given twice in one object is a bad row, not a silent last-one-wins (which
    of two answers trains would depend on the order of the keys)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


# --------------------------------------------------------------------------- reading


def _open(path: Path, what: str):
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a .jsonl file ({what})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None


def iter_lines(path: str | Path, *, what: str = "data", max_row_bytes: int = MAX_ROW_BYTES,
               on_bytes: Callable[[bytes], None] | None = None) -> Iterator[tuple[int, str | None, str | None]]:
    """``(line number, text, reason)`` for every non-blank line, streamed: ``text`` is the decoded line
    (reason None) or None with the reason the line cannot be read (too long, not UTF-8, a stray BOM).
    ``on_bytes`` sees every byte of the file once, in order (to hash it in the same pass)."""
    path = Path(path)
    with _open(path, what) as fh:
        lineno = 0
        while True:
            chunk = fh.readline(max_row_bytes + 1)
            if not chunk:
                return
            lineno += 1
            if on_bytes:
                on_bytes(chunk)
            if len(chunk) > max_row_bytes and not chunk.endswith(b"\n"):
                size = len(chunk)
                while chunk and not chunk.endswith(b"\n"):  # skip the rest of the line, a bounded read at a time
                    chunk = fh.readline(1 << 20)
                    size += len(chunk)
                    if on_bytes and chunk:
                        on_bytes(chunk)
                yield lineno, None, (f"row of {size:,} bytes is over the {max_row_bytes:,}-byte limit for one row "
                                     "(an example that long is no training row: split it, or leave it out)")
                continue
            line = chunk[3:] if lineno == 1 and chunk.startswith(BOM) else chunk
            if not line.strip():
                continue
            if line.startswith(BOM):
                yield lineno, None, "a UTF-8 byte-order mark inside the file (concatenated files?); remove it"
                continue
            try:
                yield lineno, line.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not UTF-8 text (byte {exc.start} of the line)"


def iter_jsonl(path: str | Path, convert: Callable[[Any], T | str], *, what: str = "data",
               max_row_bytes: int = MAX_ROW_BYTES,
               on_bytes: Callable[[bytes], None] | None = None) -> Iterator[tuple[int, T | str]]:
    """``(line number, item or reason)`` for every non-blank line: ``convert`` turns a parsed JSON value
    into the item or a reason string; unreadable or invalid JSON lines come as their reason."""
    for lineno, text, why in iter_lines(path, what=what, max_row_bytes=max_row_bytes, on_bytes=on_bytes):
        if why is not None:
            yield lineno, why
            continue
        try:
            row = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            yield lineno, f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
            continue
        except RecursionError:
            yield lineno, "JSON nested too deeply"
            continue
        except _DuplicateKey as exc:
            yield lineno, f"key {exc.key!r} is given twice in one object (JSON keeps only the last): give it once"
            continue
        if _SURROGATE_ESCAPE.search(text) and (why := _unencodable(row)):
            yield lineno, why
            continue
        yield lineno, convert(row)


class BadRows:
    """Collects bad rows and raises them as one UserError of one line: the first bad row as ``file:line: reason``
    and how many more there are, with their line numbers (the first _SHOWN_BAD): nothing is dropped silently,
    and the line stays one line however many rows are bad."""

    def __init__(self, path: str | Path, noun: str):
        self.path, self.noun, self.first, self.more_lines, self.count = Path(path), noun, "", [], 0

    def add(self, lineno: int, reason: str) -> None:
        self.count += 1
        if self.count == 1:
            self.first = f"{self.path}:{lineno}: {reason}"
        elif len(self.more_lines) < _SHOWN_BAD:
            self.more_lines.append(lineno)

    def raise_if_any(self) -> None:
        if not self.count:
            return
        more = ""
        if self.count > 1:
            lines = ", ".join(map(str, self.more_lines)) + (", ..." if self.count - 1 > len(self.more_lines) else "")
            more = f" (and {self.count - 1} more bad {self.noun} row{'s' if self.count > 2 else ''}: lines {lines})"
        raise UserError(self.first + more)


def read_jsonl(path: str | Path, convert: Callable[[Any], T | str], noun: str, what: str, *,
               max_row_bytes: int = MAX_ROW_BYTES, on_bytes: Callable[[bytes], None] | None = None
               ) -> list[tuple[int, T]]:
    """Every non-blank line of a JSONL file through ``convert``, as ``(line number, item)``. Bad rows are one
    UserError of one line (BadRows: the first as ``file:line: reason``, the count and lines of the rest): nothing
    is silently dropped. ``noun`` names a row ("training"), ``what`` the file ("training data")."""
    path = Path(path)
    items: list[tuple[int, T]] = []
    bad = BadRows(path, noun)
    for lineno, got in iter_jsonl(path, convert, what=what, max_row_bytes=max_row_bytes, on_bytes=on_bytes):
        if isinstance(got, str):
            bad.add(lineno, got)
        else:
            items.append((lineno, got))
    bad.raise_if_any()
    if not items:
        raise UserError(f"{path}: no {noun} rows")
    return items


def read_rows_at(path: str | Path, **kw) -> list[tuple[int, Messages]]:
    """Every training row of a JSONL file as ``(line number, message list)``."""
    return read_jsonl(path, normalize_row, "training", "training data", **kw)


def read_rows(path: str | Path, **kw) -> list[Messages]:
    """Every training row of a JSONL file as a message list. Bad rows: one UserError naming them (BadRows)."""
    return [row for _, row in read_rows_at(path, **kw)]
