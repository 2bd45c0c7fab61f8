"""Training rows: every supported JSONL format normalised to one chat message list. Pure, no torch.

Formats (one JSON object per line; blank lines are skipped; other keys such as ids are ignored):

- OpenAI ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``; at least
  one user and one assistant message, the last message from the assistant.
- ``{"prompt": "...", "response": "..."}`` or ``{"prompt": "...", "completion": "..."}``.
- alpaca ``{"instruction": "...", "input": "...", "output": "..."}`` (``input`` may be empty or
  absent; when present it follows the instruction after a blank line, as in the alpaca template).

The prompt/response and alpaca formats also accept an optional ``"system"`` string.

Every row is validated; bad rows are never dropped. ``read_rows`` raises one ``UserError`` whose
message lists each bad row on its own line as ``file:line: reason``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from advisor.errors import UserError

T = TypeVar("T")

ROLES = ("system", "user", "assistant")

Messages = list[dict[str, str]]


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


def _from_messages(row: dict) -> Messages | str:
    msgs = row["messages"]
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty list of {role, content} objects"
    out: Messages = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"messages[{i}] must be an object with 'role' and 'content'"
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
    """The row as a chat message list, or the one-phrase reason it is bad."""
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
    return {"messages": _from_messages, "prompt": _from_prompt, "alpaca": _from_alpaca}[kinds[0]](row)


def read_jsonl(path: str | Path, convert: Callable[[Any], T | str], noun: str, what: str) -> list[tuple[int, T]]:
    """Every non-blank line of a JSONL file through ``convert`` (which returns the item or a reason string),
    as ``(line number, item)``. One UserError lists every bad row as ``file:line: reason``: nothing is
    silently dropped. ``noun`` names a row ("training"), ``what`` the file ("training data")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None
    items: list[tuple[int, T]] = []
    bad: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        got = convert(row)
        if isinstance(got, str):
            bad.append(f"{path}:{lineno}: {got}")
        else:
            items.append((lineno, got))
    if bad:
        raise UserError(f"{len(bad)} bad {noun} row{'s' if len(bad) != 1 else ''} in {path}:\n" + "\n".join(bad))
    if not items:
        raise UserError(f"{path}: no {noun} rows")
    return items


def read_rows(path: str | Path) -> list[Messages]:
    """Every row of a JSONL file as a message list. One UserError lists every bad row, one per line."""
    return [row for _, row in read_jsonl(path, normalize_row, "training", "training data")]
