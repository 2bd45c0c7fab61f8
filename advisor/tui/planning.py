"""From the inputs' data to a Plan, with each failure mapped to the widget of the field that caused it. No textual here.

Runs in the planning worker thread: measuring a data file and ``planner.plan`` never touch the UI.
A UserError names its schema field (``have[0].gpu``); ``WIDGET_OF_FIELD`` is the one table from field
to input widget id ('' = no widget for it: the status line shows it, with the field's name).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from advisor.catalog import load_catalog
from advisor.errors import UserError, lookup
from advisor.modelfiles import model_file_names, model_files
from advisor.models import DatasetSpec, Plan, PlanRequest
from advisor.planner import EstimateCache
from advisor.planner import plan as run_planner
from advisor.request import measure_dataset, validate_request

# schema field (indexes dropped; looked up by ever shorter prefixes) -> input widget id
WIDGET_OF_FIELD: dict[str, str | None] = {
    "model": "model",
    "model_path": "",
    "model_files": "",  # hashed from the model directory / model_path, no widget of its own
    "dataset": "dataset_file",
    "dataset.examples": "examples",
    "dataset.avg_tokens": "avg_tokens",
    "dataset.file": "dataset_file",
    "dataset.over_max_seq_len": "", "dataset.long_rows": "", "dataset.token_p50": "", "dataset.token_p95": "",
    "dataset.token_max": "", "dataset.token_count_method": "",
    "golden": "",
    "max_seq_len": "max_seq_len",
    "epochs": "",
    "base": "",
    "goals": "",
    "budget_usd": "budget_usd",
    "deadline_hours": "deadline_hours",
    "have": "have",
    "nvidia_stack": "",
    "max_gpus": "",
    "method": "",
    "precision": "",
    "gpu": "",
    "num_gpus": "",
    "strategy": "",
    "learning_rate": "",
    "packing": "",
    "memory_headroom": "",
    "memory_check_steps": "",
    "gate_tolerance": "",
    "min_golden_score": "",
    "deploy_tasks": "", "deploy_include_path": "", "deploy_limit": "", "network_gbit_per_s_per_node": "",
    "data_check": "dataset_file",
}


class FieldErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k or 'input'}: {v}" for k, v in errors.items()))
        self.errors = errors


def widget_of(field: str | None) -> str:
    """The input widget id for a schema field ('' when none shows it)."""
    return (lookup(field, WIDGET_OF_FIELD) or "") if field else ""


def _field_errors(exc: UserError) -> FieldErrors:
    """{widget id: message}; a field without a widget keeps its name in the status-line message."""
    errors: dict[str, str] = {}
    for field, message in getattr(exc, "problems", None) or [(exc.field, exc.message)]:
        widget = widget_of(field)
        errors.setdefault(widget, message if widget or not field else f"{field}: {message}")
    return FieldErrors(errors)


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


@lru_cache(maxsize=8)
def _model_files(model: str, model_path: str | None, stamp: tuple) -> dict | None:
    record = model_files(model, model_path)
    return record.to_dict() if record else None


def model_files_cached(model: str, model_path: str | None) -> dict | None:
    """modelfiles.model_files, cached while no model file changed (name, mtime, size): no re-hash per keystroke."""
    folder = Path(model_path or model).expanduser()
    stamp: tuple = ()
    if model and folder.is_dir():
        stamp = tuple((n, (st := (folder / n).stat()).st_mtime_ns, st.st_size) for n in model_file_names(folder))
    return _model_files(model, model_path, stamp)


def build_request(data: dict[str, Any]) -> PlanRequest:
    """The same PlanRequest the CLI builds (advisor.request.validate_request), from the inputs' data."""
    data = dict(data)
    path = data.pop("dataset_file", None)
    try:
        data["model_files"] = model_files_cached(str(data.get("model") or ""), data.get("model_path"))
        if path:
            data["dataset"] = measure(path, str(data.get("model") or "")).to_dict()
        return validate_request(data)
    except UserError as exc:
        raise _field_errors(exc) from None


def make_plan(data: dict[str, Any], estimates: EstimateCache | None = None, calibration=None) -> Plan:
    """The plan for the inputs, or FieldErrors naming each bad field ('' = not tied to one widget).
    ``estimates``: the session's estimate cache (the app owns it); ``calibration``: the session's
    advisor.calibration.Calibration (`sftplan tui --calibration FILE`), or None."""
    request = build_request(data)
    try:
        return run_planner(request, load_catalog(), estimates, calibration=calibration)
    except UserError as exc:
        raise _field_errors(exc) from None
