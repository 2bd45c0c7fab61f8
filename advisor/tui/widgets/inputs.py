"""The left panel: every PlanRequest input, converted with ``to_model()``; invalid fields show their reason."""

from __future__ import annotations

import difflib
import re
from typing import Any

from textual import getters
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import SuggestFromList
from textual.widgets import Checkbox, Input, Label, Select, Static

from advisor.models import GOALS, PlanRequest

GOAL_HELP = {
    "lora-below-bar": "LoRA was tried and fell short of the bar",
    "new-tokenizer": "new tokens: embeddings must learn",
    "deep-retask": "deep change of task or domain",
    "hard-reasoning": "hard reasoning, maths or code",
    "fast-iteration": "many quick, cheap experiments",
    "lora-cleared-bar": "LoRA already met the quality bar",
}

DEFAULT_REQUEST = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1024}, "max_seq_len": 2048}

# field id -> (label, placeholder)
TEXT_FIELDS = {
    "model": ("model", "preset, 8B or config.json"),
    "examples": ("examples", "number of rows"),
    "avg_tokens": ("avg tok", "tokens per example"),
    "dataset_file": ("data", "JSONL file (measured)"),
    "max_seq_len": ("max seq", "tokens"),
    "budget_usd": ("budget $", "none (e.g. 5k)"),
    "deadline_hours": ("deadline", "none (hours)"),
    "have": ("owned", "GPUs: h100-sxm:8, ..."),
}
INT_FIELDS = {"examples", "avg_tokens", "max_seq_len"}
FLOAT_FIELDS = {"budget_usd", "deadline_hours"}
_SUFFIX = {"k": 1_000, "m": 1_000_000}


def parse_number(fid: str, raw: str) -> int | float:
    """A number as people type it: "5000", "5,000", "$5,000", "5k", "1.5M" (ValueError otherwise).

    A dollar sign only in the budget; whole numbers only in the integer fields ("1.5k" rows is 1500).
    """
    text = raw.strip().replace(",", "").replace("_", "").replace(" ", "")
    if fid == "budget_usd" and text.startswith("$"):
        text = text[1:]
    scale = _SUFFIX.get(text[-1:].lower(), 1) if text else 1
    if scale != 1:
        text = text[:-1]
    value = float(text) * scale  # ValueError on anything else; rejects "nan"/"inf" below
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(raw)
    if fid in INT_FIELDS:
        if not value.is_integer():
            raise ValueError(raw)
        return int(value)
    return value


class GoalBox(Checkbox):
    """A checkbox whose box is empty when unticked (Checkbox draws an X in both states, the unticked
    one in a dim colour that reads as ticked on many terminals)."""

    @property
    def BUTTON_INNER(self) -> str:  # noqa: N802 - ToggleButton's name for the mark
        return "X" if self.value else " "


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class InputsPanel(VerticalScroll):
    """Inputs; ``to_model()`` returns (request data, field errors) without planning anything."""

    model_input = getters.query_one("#model", Input)
    base_select = getters.query_one("#base", Select)
    method_select = getters.query_one("#method", Select)
    nvidia_box = getters.query_one("#nvidia_stack", Checkbox)

    def __init__(self, presets: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.presets = presets
        self.extra: dict[str, Any] = {}  # request fields without a widget (epochs, pins, golden...), kept as given

    def compose(self) -> ComposeResult:
        for fid, (label, placeholder) in TEXT_FIELDS.items():
            with Horizontal(classes="field"):
                yield Label(label, classes="field-label")
                suggester = SuggestFromList(self.presets, case_sensitive=False) if fid == "model" else None
                yield Input(placeholder=placeholder, id=fid, compact=True, suggester=suggester)
            yield Static("", id=f"{fid}-error", classes="field-error")
            if fid == "avg_tokens":
                with Horizontal(classes="field"):
                    yield Label("base", classes="field-label")
                    yield Select([("base model", "base"), ("instruct model", "instruct")], value="base",
                                 allow_blank=False, id="base", compact=True)
        with Horizontal(classes="field"):
            yield Label("method", classes="field-label")
            yield Select([("auto (rules)", "auto"), ("full SFT", "full-sft"), ("LoRA", "lora")], value="auto",
                         allow_blank=False, id="method", compact=True)
        yield GoalBox("NVIDIA (Megatron)", id="nvidia_stack", compact=True)
        yield Label("goals", classes="section")
        for goal in GOALS:
            yield GoalBox(goal, id=f"goal-{goal}", compact=True, tooltip=GOAL_HELP[goal])
            yield Static(GOAL_HELP[goal], classes="goal-help")

    # ------------------------------------------------------------------ model <-> widgets
    def _input(self, fid: str) -> Input:
        return self.query_one(f"#{fid}", Input)

    def from_model(self, request: PlanRequest | dict) -> None:
        """Fill the widgets from a request (a PlanRequest or its dict)."""
        data = request.to_dict() if isinstance(request, PlanRequest) else dict(request)
        ds = data.get("dataset") or {}
        values = {
            "model": data.get("model"), "examples": ds.get("examples"), "avg_tokens": ds.get("avg_tokens"),
            "dataset_file": (ds.get("file") or {}).get("path"), "max_seq_len": data.get("max_seq_len"),
            "budget_usd": data.get("budget_usd"), "deadline_hours": data.get("deadline_hours"),
            "have": ", ".join(f"{h['gpu']}:{h['count']}" for h in data.get("have") or []),
        }
        for fid, value in values.items():
            self._input(fid).value = _fmt(value)
        self.base_select.value = data.get("base") or "base"
        self.method_select.value = data.get("method") or "auto"
        self.nvidia_box.value = bool(data.get("nvidia_stack"))
        for goal in GOALS:
            self.query_one(f"#goal-{goal}", Checkbox).value = goal in (data.get("goals") or [])
        self.extra = {k: v for k, v in data.items() if k not in _OWN_KEYS and v is not None}

    def to_model(self) -> tuple[dict, dict[str, str]]:
        """(request data, {field id: reason}). The data is only complete when there are no errors.

        A data file is returned as ``dataset_file`` (measured by the planning worker, not here).
        """
        errors: dict[str, str] = {}
        raw = {fid: self._input(fid).value.strip() for fid in TEXT_FIELDS}
        data: dict[str, Any] = dict(self.extra)
        data["model"] = raw["model"]
        if not raw["model"]:
            errors["model"] = "required: a preset, a size such as 8B, or a config.json"
        nums: dict[str, Any] = {}
        for fid in INT_FIELDS | FLOAT_FIELDS:
            if not raw[fid]:
                nums[fid] = None
                continue
            try:
                nums[fid] = parse_number(fid, raw[fid])
            except ValueError:
                errors[fid] = f"not a {'whole ' if fid in INT_FIELDS else ''}number: {raw[fid]!r}"
                continue
            if nums[fid] <= 0:
                errors[fid] = "must be greater than 0"
        if raw["dataset_file"]:
            data["dataset_file"] = raw["dataset_file"]
        else:
            for fid in ("examples", "avg_tokens"):
                if nums.get(fid) is None and fid not in errors:
                    errors[fid] = "required (or give a data file)"
            data["dataset"] = {"examples": nums.get("examples"), "avg_tokens": nums.get("avg_tokens")}
        for fid in ("max_seq_len", "budget_usd", "deadline_hours"):
            if nums.get(fid) is not None:
                data[fid] = nums[fid]
            else:
                data.pop(fid, None)
        data["have"] = []
        for item in filter(None, (s.strip() for s in raw["have"].split(","))):
            gpu, sep, count = item.partition(":")
            if not sep or not gpu.strip() or not count.strip().isdigit() or int(count) <= 0:
                errors["have"] = f"{item!r}: expected GPU:COUNT, e.g. h100-sxm:8"
                break
            data["have"].append({"gpu": gpu.strip().lower(), "count": int(count)})
        data["base"] = self.base_select.value
        data["method"] = self.method_select.value
        data["nvidia_stack"] = self.nvidia_box.value
        data["goals"] = [g for g in GOALS if self.query_one(f"#goal-{g}", Checkbox).value]
        return data, errors

    def show_errors(self, errors: dict[str, str]) -> None:
        """Mark each field with its reason; clear the others. Unchanged fields are left alone: an update
        re-lays out the screen, and this runs after every plan."""
        shown = getattr(self, "_errors_shown", None)
        for fid in TEXT_FIELDS:
            reason = errors.get(fid, "")
            if shown is not None and shown.get(fid, "") == reason:
                continue
            self.query_one(f"#{fid}-error", Static).update(reason)
            self.query_one(f"#{fid}-error", Static).set_class(bool(reason), "-shown")
            self._input(fid).set_class(bool(reason), "-invalid")
        self._errors_shown = {fid: errors.get(fid, "") for fid in TEXT_FIELDS}


_OWN_KEYS = {"model", "dataset", "max_seq_len", "budget_usd", "deadline_hours", "have", "base", "method",
             "nvidia_stack", "goals"}


_UNKNOWN_MODEL = re.compile(r"unknown model '([^']*)'")
_DID_YOU_MEAN = re.compile(r"did you mean '([^']*)'")


def short_error(fid: str, message: str, presets: list[str]) -> str:
    """One line per field: the unknown-model error lists every preset; the field says the nearest one."""
    m = _UNKNOWN_MODEL.search(message) if fid == "model" else None
    if not m:
        return message
    name = m.group(1)
    guess = _DID_YOU_MEAN.search(message)
    near = [guess.group(1)] if guess else difflib.get_close_matches(name.lower(), presets, n=1, cutoff=0.6)
    if near:
        return f"unknown model '{name}': did you mean {near[0]}? F9 lists all"
    return f"unknown model '{name}': a preset (F9 lists all), a size such as 8B, or a config.json"
