"""The guide's by-scale table, built from the planner (not written by hand). Pure: data and text, no printing.

The guide (docs/SOURCES.md, "by-scale table": under 1k examples to over 1M, indicative cost,
recommended method, hardware tier) gives one table; here each cell is ``advisor.planner.plan`` run on a
request for that row's example count and that column's model, with the assumptions stated above it:
tokens per example, epochs (the rules' choice unless given), goals, max_seq_len.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from advisor.errors import UserError
from advisor.models import PlanRequest

# (label, examples the row is planned at: about the geometric middle of the bucket)
ROWS: tuple[tuple[str, int], ...] = (
    ("< 1k", 500),
    ("1k-10k", 3_000),
    ("10k-100k", 30_000),
    ("100k-1M", 300_000),
    ("> 1M", 3_000_000),
)
DEFAULT_MODELS = ("llama-3.2-1b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")
DEFAULT_AVG_TOKENS = 512


@dataclass
class Cell:
    model: str
    examples: int
    method: str
    gpu: str | None
    num_gpus: int | None
    strategy: str | None
    hours: float | None
    cost_usd: float | None
    epochs: int
    meets_constraints: bool
    note: str = ""


@dataclass
class ScaleTable:
    models: list[str]
    model_names: list[str]
    rows: list[tuple[str, int]]
    cells: list[list[Cell]]  # [row][column]
    assumptions: dict[str, Any]
    elapsed_s: float = 0.0
    catalog_sha256: str = ""
    warnings: list[str] = field(default_factory=list)  # warnings every cell's plan gives and the defaults do not

    def to_dict(self) -> dict[str, Any]:
        return {"assumptions": self.assumptions, "models": self.models, "model_names": self.model_names,
                "rows": [{"label": label, "examples": n, "cells": [asdict(c) for c in cells]}
                         for (label, n), cells in zip(self.rows, self.cells)],
                "catalog_sha256": self.catalog_sha256, "warnings": self.warnings}


def build(catalog, *, models: list[str] | None = None, avg_tokens: int = DEFAULT_AVG_TOKENS,
          epochs: int | None = None, goals: list[str] | None = None, max_seq_len: int = 2048,
          budget_usd: float | None = None, deadline_hours: float | None = None) -> ScaleTable:
    """One plan per (row, model)."""
    from advisor.planner import plan

    models = list(models or DEFAULT_MODELS)
    t0 = time.perf_counter()
    cells: list[list[Cell]] = []
    names: list[str] = []
    shared: list[str] | None = None  # warnings every plan so far gave, in the first plan's order
    for label, n in ROWS:
        row = []
        for m in models:
            # a bad value raises SpecError, a UserError naming its field (dataset.avg_tokens)
            req = PlanRequest(model=m, dataset={"examples": n, "avg_tokens": avg_tokens}, epochs=epochs,
                              goals=list(goals or []), max_seq_len=max_seq_len, budget_usd=budget_usd,
                              deadline_hours=deadline_hours)
            p = plan(req, catalog)
            shared = list(p.warnings) if shared is None else [w for w in shared if w in p.warnings]
            if len(names) < len(models):
                names.append(p.model.name)
            rec, est = p.recommended, p.estimate
            if rec is not None and est is not None:
                row.append(Cell(m, n, p.method, rec.gpu, rec.num_gpus, rec.strategy, est.hours, est.cost_usd,
                                p.hyperparameters.epochs, True))
            elif p.closest is not None:
                c = p.closest
                row.append(Cell(m, n, p.method, c.config.gpu, c.config.num_gpus, c.config.strategy, c.hours,
                                c.cost_usd, p.hyperparameters.epochs, False, note=c.why))
            else:
                row.append(Cell(m, n, p.method, None, None, None, None, None, p.hyperparameters.epochs, False,
                                note="nothing fits"))
        cells.append(row)
    epochs_by_row = {label: sorted({c.epochs for c in row}) for (label, _), row in zip(ROWS, cells)}
    assumptions = {
        "tokens_per_example": avg_tokens,
        "epochs": epochs if epochs is not None else "chosen by the rules: " + ", ".join(
            f"{label} {'/'.join(map(str, e))}" for label, e in epochs_by_row.items()),
        "goals": list(goals or []) or "none (the rules' default method unless a goal calls for full SFT)",
        "max_seq_len": max_seq_len,
        "examples_per_row": {label: n for label, n in ROWS},
        "budget_usd": budget_usd, "deadline_hours": deadline_hours,
        "prices": "the hardware catalog's on-demand USD per GPU-hour",
    }
    # what the inputs add: the shared warnings less those of the table's defaults (no golden set, no deploy task)
    baseline = plan(PlanRequest(model=models[0], dataset={"examples": ROWS[0][1], "avg_tokens": DEFAULT_AVG_TOKENS}), catalog)
    warnings = [w for w in shared or [] if w not in baseline.warnings]
    return ScaleTable(models, names, list(ROWS), cells, assumptions, time.perf_counter() - t0,
                      getattr(catalog, "sha256", ""), warnings=warnings)


def _money(x: float) -> str:
    return f"${x:,.0f}" if x >= 100 else f"${x:,.2f}"


def _hours(h: float) -> str:
    return f"{h:,.0f} h" if h >= 10 else f"{h:.2g} h" if h < 1 else f"{h:.1f} h"


def cell_lines(c: Cell) -> list[str]:
    """A cell in two short lines (method, tier x count / hours, cost): the TUI's view stacks them."""
    if c.gpu is None:
        return [f"{c.method}: {c.note}"]
    miss = "" if c.meets_constraints else " (misses budget/deadline)"
    return [f"{c.method}, {c.gpu} x{c.num_gpus}", f"{_hours(c.hours)}, {_money(c.cost_usd)}{miss}"]


def cell_text(c: Cell) -> str:
    """A cell on one line (the text and Markdown tables)."""
    return ", ".join(cell_lines(c))


def parse_models(text: str) -> list[str]:
    """'1b,8b,70b,405b' -> the columns; each entry a preset id, a size (8B, 350M) or a config.json / model
    directory, checked here so that a bad one is named by its place in the list."""
    from advisor.architecture import preset_names, resolve_model
    from advisor.errors import did_you_mean

    models = [m.strip() for m in str(text).split(",")]
    if models == [""]:
        raise UserError("no model given: a comma-separated list such as 1b,8b,70b,405b", field="models")
    for i, m in enumerate(models, 1):
        if not m:
            raise UserError(f"entry {i} is empty (a comma too many?)", field="models")
        try:
            resolve_model(m)
        except UserError as exc:
            reason = exc.message
            if reason.startswith("unknown model"):  # the core's message lists every preset: too long for one line
                hint = did_you_mean(m, preset_names())
                reason = f"unknown model{hint}" if hint else "unknown model; a preset, a size such as 8B, or a config.json"
            raise UserError(f"entry {i} {m!r}: {reason}", field="models") from None
    return models


def assumption_lines(t: ScaleTable) -> list[str]:
    a = t.assumptions
    lines = [f"tokens per example: {a['tokens_per_example']}", f"epochs: {a['epochs']}", f"goals: {a['goals'] if isinstance(a['goals'], str) else ', '.join(a['goals'])}",
             f"max_seq_len: {a['max_seq_len']}",
             "each row planned at " + ", ".join(f"{n:,} examples ({label})" for label, n in t.rows)]
    if a["budget_usd"] is not None or a["deadline_hours"] is not None:
        lines.append(f"budget: {a['budget_usd']} USD, deadline: {a['deadline_hours']} h")
    lines.append(f"cost: {a['prices']} (catalog {t.catalog_sha256[:12]}); each cell: method, GPU tier x count, hours, cost")
    return lines + [f"warning (every cell): {w}" for w in t.warnings]


def to_markdown(t: ScaleTable) -> str:
    out = ["# By-scale table (from the planner)", ""] + [f"- {x}" for x in assumption_lines(t)] + [""]
    out.append("| examples | " + " | ".join(t.model_names) + " |")
    out.append("|---|" + "---|" * len(t.models))
    for (label, _), row in zip(t.rows, t.cells):
        out.append(f"| {label} | " + " | ".join(cell_text(c) for c in row) + " |")
    return "\n".join(out) + "\n"


def to_text(t: ScaleTable) -> str:
    out = ["By-scale table (from the planner)"] + [f"  {x}" for x in assumption_lines(t)] + [""]
    head = ["examples"] + t.model_names
    body = [[label] + [cell_text(c) for c in row] for (label, _), row in zip(t.rows, t.cells)]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    for r in [head] + body:
        out.append("  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip())
    return "\n".join(out) + "\n"
