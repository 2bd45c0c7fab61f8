"""The right panel: decision and why, the tier table (sortable), memory bar, hyperparameters, LoRA, warnings."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from advisor.catalog import load_catalog
from advisor.models import Plan, TierRow
from advisor.planner import plan as run_planner
from advisor.render import approval_line, config_str, decision_line

def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}" if x < 100 else f"${x:,.0f}"


def _hours(x: float | None) -> str:
    return "-" if x is None else f"{x * 60:.0f} min" if x < 1 else f"{x:,.1f} h"


_KEY_PREFIXES = ("method.", "parallel.", "constraints.", "fit.")
MEMORY_COLORS = {"weights": "blue", "gradients": "magenta", "optimizer": "yellow", "activations": "green",
                 "logits": "cyan", "gathered_layer": "red", "overhead": "bright_black"}
COLUMNS = ("tier", "cost", "time", "GiB/GPU", "config (or why it cannot)", "meets")


def memory_bar(parts_gib: dict[str, float], capacity_gib: float, width: int = 40) -> Text:
    """A bar of the memory components against the GPU's capacity (one cell = capacity / width)."""
    total = sum(parts_gib.values())
    scale = width / max(capacity_gib, total, 1e-9)
    bar, used = Text(), 0
    for name, gib in parts_gib.items():
        cells = round(gib * scale)
        cells = min(cells, width - used)
        if cells > 0:
            bar.append("█" * cells, style=MEMORY_COLORS.get(name, "white"))
            used += cells
    bar.append("░" * max(0, round(capacity_gib * scale) - used), style="bright_black")
    over = " OVER" if total > capacity_gib else ""
    bar.append(f" {total:.1f}/{capacity_gib:.0f} GiB{over}", style="bold red" if over else "bold")
    return bar


def _sort_key(mode: str):
    def key(row: TierRow) -> tuple:
        value = {"cost": row.cost_usd, "time": row.hours}.get(mode)
        return (not row.fits, value if value is not None else float("inf"), row.gpu)
    return key


class PlanView(VerticalScroll):
    """Shows one Plan; ``show(plan)`` replaces it."""

    sort_mode: reactive[str] = reactive("plan")
    decision = getters.query_one("#decision", Static)
    why = getters.query_one("#why", Static)
    tiers = getters.query_one("#tiers", DataTable)
    memory = getters.query_one("#memory", Static)
    details = getters.query_one("#details", Static)

    plan: Plan | None = None
    _last_rec: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: dict[str | None, Text] = {}
        self._breakdowns: dict[tuple[str, str], dict[str, float]] = {}

    def compose(self) -> ComposeResult:
        yield Static("planning...", id="decision")
        yield DataTable(id="tiers", cursor_type="row", zebra_stripes=True)
        yield Static("", id="memory")
        yield Static("", id="why")
        yield Static("", id="details")

    def on_mount(self) -> None:
        self._column_keys = self.tiers.add_columns(*COLUMNS)

    def _set(self, widget: Static, content: Text) -> None:
        """Update only what changed, and re-lay out the screen only when the height may change.

        A layout pass makes Textual repaint every widget on screen (~50 ms here); a same-height update
        repaints this one widget. Same height: as many lines once wrapped at the widget's width.
        """
        old = self._shown.get(widget.id)
        if old == content:
            return
        self._shown[widget.id] = content
        widget.update(content, layout=not self._same_height(widget, old, content))

    def _same_height(self, widget: Static, old: Text | None, new: Text) -> bool:
        if old is None:
            return False
        width = widget.content_region.width
        if width <= 0:
            return False
        console = self.app.console
        return len(old.wrap(console, width)) == len(new.wrap(console, width))

    def show(self, plan: Plan) -> None:
        self.plan = plan
        head = Text(f"{plan.model.name}: ", style="bold") + Text(decision_line(plan))
        head.append("\n" + approval_line(plan), style="green" if plan.approval else "yellow")
        self._set(self.decision, head)
        why = Text()
        for f in plan.findings:
            if f.rule_id.startswith(_KEY_PREFIXES):
                why.append(f"{f.rule_id}", style="bold")
                why.append(f" -> {f.verdict}{' (overridden)' if f.overridden else ''}: {f.why}\n")
                why.append(f"  source: {f.source}\n", style="dim italic")
        self._set(self.why, why)
        self._fill_tiers()
        self._set(self.details, self._details(plan))

    # ------------------------------------------------------------------ tiers
    def _recommended_gpu(self) -> str | None:
        return self.plan.recommended.gpu if self.plan and self.plan.recommended else None

    def _fill_tiers(self) -> None:
        if self.plan is None:
            return
        table, rec = self.tiers, self._recommended_gpu()
        rows = list(self.plan.tiers)
        if self.sort_mode != "plan":
            rows.sort(key=_sort_key(self.sort_mode))
        order = [t.gpu for t in rows]
        same_rows = order == [k.value for k in table.rows]  # in place: far cheaper to repaint than clear()
        if not same_rows:
            table.clear()
        for t in rows:
            style = "bold green" if t.gpu == rec else ("dim" if not t.fits else "")
            mark = "*" if t.gpu == rec else " "
            if t.fits and t.config:
                c = t.config
                cells: list[Any] = [f"{mark}{t.gpu}", _usd(t.cost_usd), _hours(t.hours), f"{t.memory_per_gpu_gib:.1f}",
                                    f"{c.num_gpus}x {c.strategy} mb{c.micro_batch_size}",
                                    "yes" if t.meets_constraints else "no"]
            else:
                cells = [f"{mark}{t.gpu}", "-", "-", "-", f"does not fit: {t.why_not or '-'}", "no"]
            texts = [Text(str(c), style=style) for c in cells]
            if not same_rows:
                table.add_row(*texts, key=t.gpu)
                continue
            for col, text in zip(self._column_keys, texts):
                if table.get_cell(t.gpu, col) != text:
                    table.update_cell(t.gpu, col, text, update_width=True)
        if rec is not None and (not same_rows or rec != self._last_rec):
            table.move_cursor(row=table.get_row_index(rec))
        self._last_rec = rec
        highlighted = order[table.cursor_row] if 0 <= table.cursor_row < len(order) else None
        self._show_memory(highlighted or rec or (order[0] if order else None))

    def watch_sort_mode(self) -> None:
        self._fill_tiers()

    @on(DataTable.RowHighlighted, "#tiers")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self._show_memory(event.row_key.value)

    def _show_memory(self, gpu: str | None) -> None:
        plan = self.plan
        if plan is None or gpu is None:
            self._set(self.memory, Text(""))
            return
        row = next((t for t in plan.tiers if t.gpu == gpu), None)
        gpus = load_catalog().gpus
        capacity = gpus[gpu].hbm_gib if gpu in gpus else 0.0
        text = Text(f"memory per GPU, {gpu}", style="bold")
        breakdown = None
        if plan.estimate and plan.recommended and plan.recommended.gpu == gpu:
            config, breakdown = plan.recommended, plan.estimate.memory_breakdown_gib
        elif row is not None and row.fits and row.config is not None:
            config = row.config
            breakdown = self._breakdowns.get((plan.plan_sha256, gpu))
            if breakdown is None:
                self._pinned_breakdown(plan, row)
        if breakdown is not None:
            text.append(f" ({config_str(config)})\n", style="dim")
            text += memory_bar(breakdown, capacity)
            text.append("\n")
            for name, gib in breakdown.items():
                if gib:
                    text.append("█ ", style=MEMORY_COLORS.get(name, "white"))
                    text.append(f"{name} {gib:.1f}  ")
        elif row is not None and row.fits and row.memory_per_gpu_gib is not None:
            text.append(" (breakdown being computed)\n", style="dim")
            text += memory_bar({"total": row.memory_per_gpu_gib}, capacity)
        else:
            text.append(f"\n{row.why_not if row else 'not planned'}", style="dim")
        self._set(self.memory, text)

    @work(thread=True, exclusive=True, group="memory")
    def _pinned_breakdown(self, plan: Plan, row: TierRow) -> None:
        """The breakdown of a non-recommended row: the planner pinned to that row's GPU, count and strategy."""
        c = row.config
        request = plan.request.model_copy(update={"gpu": row.gpu, "num_gpus": c.num_gpus, "strategy": c.strategy})
        try:
            pinned = run_planner(request, load_catalog())
        except Exception:  # noqa: BLE001 - the total stays shown
            return
        if pinned.estimate is not None:
            self.app.call_from_thread(self._breakdown_ready, plan.plan_sha256, row.gpu, pinned.estimate.memory_breakdown_gib)

    def _breakdown_ready(self, plan_sha256: str, gpu: str, breakdown: dict[str, float]) -> None:
        self._breakdowns[(plan_sha256, gpu)] = breakdown
        if self.plan is not None and self.plan.plan_sha256 == plan_sha256:
            order = [k.value for k in self.tiers.rows]
            if 0 <= self.tiers.cursor_row < len(order) and order[self.tiers.cursor_row] == gpu:
                self._show_memory(gpu)

    # ------------------------------------------------------------------ the rest
    @staticmethod
    def _details(plan: Plan) -> Text:
        hp, la, ck = plan.hyperparameters, plan.lora_alternative, plan.checkpointing
        t = Text("hyperparameters\n", style="bold")
        t.append(f"  lr {hp.learning_rate:.2e} cosine, warmup {hp.warmup_ratio:.0%}, wd {hp.weight_decay:g}\n")
        t.append(f"  {hp.epochs} epochs, seq {hp.max_seq_len}, batch {hp.global_batch_size} seqs "
                 f"(~{hp.global_batch_tokens:,} tokens)\n")
        t.append(f"  checkpoints: every epoch, keep {ck.keep_last}, {ck.disk_gib:,.1f} GiB\n")
        t.append("full SFT vs LoRA\n", style="bold")
        full = f"{_hours(plan.estimate.hours)}, {_usd(plan.estimate.cost_usd)}" if plan.estimate else "no fit"
        t.append(f"  full SFT: {full}\n")
        if la.gpu:
            ratio = f" (full SFT {la.full_sft_cost_ratio:.1f}x)" if la.full_sft_cost_ratio else ""
            t.append(f"  LoRA r{la.rank}{'+DoRA' if la.dora else ''}: {la.num_gpus}x {la.gpu}, {_hours(la.hours)}, "
                     f"{_usd(la.cost_usd)}{ratio}\n")
        else:
            t.append(f"  LoRA: {la.note or '-'}\n")
        for w in plan.warnings:
            t.append(f"warning: {w}\n", style="yellow")
        return t
