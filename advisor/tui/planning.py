"""From the inputs' data to a Plan, with each failure mapped to the field that caused it. No textual here.

Runs in the planning worker thread: measuring a data file and ``planner.plan`` never touch the UI.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from advisor.catalog import load_catalog
from advisor.errors import UserError
from advisor.models import DatasetSpec, Plan, PlanRequest
from advisor.planner import plan as run_planner
from advisor.request import measure_dataset

# pydantic location / CLI flag -> input field id
_LOC_FIELD = {"model": "model", "examples": "examples", "avg_tokens": "avg_tokens", "max_seq_len": "max_seq_len",
              "budget_usd": "budget_usd", "deadline_hours": "deadline_hours", "have": "have"}
_FLAG_FIELD = {"--model": "model", "--have": "have", "--dataset": "dataset_file", "--max-seq-len": "max_seq_len",
               "--budget-usd": "budget_usd", "--deadline-hours": "deadline_hours", "--examples": "examples",
               "--avg-tokens": "avg_tokens"}


class FieldErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k or 'input'}: {v}" for k, v in errors.items()))
        self.errors = errors


@lru_cache(maxsize=16)
def _measure(path: str, mtime_ns: int, size: int, model: str) -> DatasetSpec:
    return measure_dataset(path, model)


def measure(path: str, model: str) -> DatasetSpec:
    """measure_dataset, cached while the file is unchanged (a keystroke elsewhere does not re-read it)."""
    try:
        st = os.stat(path)
    except OSError:
        raise FieldErrors({"dataset_file": f"{path}: no such file"}) from None
    return _measure(path, st.st_mtime_ns, st.st_size, model)


def _field_of_user_error(message: str) -> str:
    head = message.split(":", 1)[0].split(" ", 1)[0]
    if head in _FLAG_FIELD:
        return _FLAG_FIELD[head]
    if head.startswith("--"):
        return ""
    return "dataset_file" if message.endswith(("no such file", "empty file", "no rows")) or ".jsonl" in head else ""


def build_request(data: dict[str, Any]) -> PlanRequest:
    data = dict(data)
    path = data.pop("dataset_file", None)
    try:
        if path:
            data["dataset"] = measure(path, str(data.get("model") or "")).model_dump(mode="json")
        return PlanRequest.model_validate(data)
    except UserError as exc:
        raise FieldErrors({_field_of_user_error(str(exc)) or "dataset_file": str(exc)}) from None
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            fid = next((_LOC_FIELD[p] for p in reversed(loc) if p in _LOC_FIELD), "")
            errors.setdefault(fid, f"{err['msg']}" if fid else f"{'.'.join(loc)}: {err['msg']}")
        raise FieldErrors(errors) from None


def make_plan(data: dict[str, Any]) -> Plan:
    """The plan for the inputs, or FieldErrors naming each bad field ('' = not tied to one field)."""
    request = build_request(data)
    try:
        return run_planner(request, load_catalog())
    except UserError as exc:
        message = str(exc)
        fid = _field_of_user_error(message)
        if fid:
            message = message.split(":", 1)[1].strip() if ":" in message else message
        raise FieldErrors({fid: message}) from None
