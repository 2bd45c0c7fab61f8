"""The right panel: the decision card (always on screen), then, scrolling, the tier table, the selected
tier's detail, why (rule sources collapsed), hyperparameters and the full-SFT / LoRA comparison."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Collapsible, DataTable, Static

from advisor.catalog import load_catalog
from advisor.models import Plan, Recommended, TierRow
from advisor.planner import plan as run_planner
from advisor.render import approval_line, config_str, decision_line


def _usd(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}" if x < 100 else f"${x:,.0f}"


def _hours(x: float | None) -> str:
    return "-" if x is None else f"{x * 60:.0f} min" if x < 1 else f"{x:,.1f} h"


_KEY_PREFIXES = ("method.", "parallel.", "constraints.", "fit.")
MEMORY_COLORS = {"weights": "blue", "gradients": "magenta", "optimizer": "yellow", "activations": "green",
                 "logits": "cyan", "gathered_layer": "red", "overhead": "bright_black"}
# The reason column comes last: it takes the width the others leave, so every column stays on screen.
COLUMNS = ("tier", "cost", "time", "GiB", "meets", "config/why")
STRATEGY_SHORT = {"zero3-offload": "z3-off", "megatron": "megatron", "fsdp": "fsdp", "zero3": "zero3",
                  "single": "single"}
MIN_REASON_WIDTH = 10


# ---------------------------------------------------------------------- what a row / the card says
# The core (struct) is adding TierRow.binding_constraint, hbm_gib and memory_breakdown_gib; each is read
# here in one place, with a fallback while a plan (or an older plan file) lacks them.

_NEEDS = re.compile(r"needs ([\d,.]+) GiB per GPU.*?; ([\d,.]+) GiB available")


def short_reason(row: TierRow) -> str:
    """Why a tier cannot run, in a few words ("HBM 45.1/22.5 GiB"); the full text is in the row's detail."""
    short = getattr(row, "binding_constraint", None)
    if short:
        return str(short)
    why = row.why_not or "-"
    m = _NEEDS.search(why)
    if m:
        need, have = (float(g.replace(",", "")) for g in m.groups())
        return f"HBM {need:,.0f}/{have:,.0f} GiB"
    head = re.split(r"[;(:]", why, maxsplit=1)[0].strip()
    return head or why


def hbm_gib(row: TierRow | None, gpu: str) -> float:
    value = getattr(row, "hbm_gib", None) if row is not None else None
    if value:
        return float(value)
    gpus = load_catalog().gpus  # cached by the catalog module: no re-read
    return float(gpus[gpu].hbm_gib) if gpu in gpus else 0.0


def row_breakdown(plan: Plan, row: TierRow) -> dict[str, float] | None:
    """The memory breakdown of a tier's configuration, if the plan carries it."""
    if plan.estimate and plan.recommended and plan.recommended.gpu == row.gpu:
        return dict(plan.estimate.memory_breakdown_gib)
    value = getattr(row, "memory_breakdown_gib", None)
    return dict(value) if value else None


def short_config(c: Recommended) -> str:
    """"16x fsdp": count and strategy (micro-batch, accumulation and nodes are in the row's detail)."""
    return f"{c.num_gpus}x {STRATEGY_SHORT.get(c.strategy, c.strategy)}"


def owned_count(plan: Plan, gpu: str) -> int:
    return sum(h.count for h in plan.request.have if h.gpu == gpu)


def shown_row(plan: Plan, row: TierRow) -> tuple[Recommended | None, float | None, float | None, float | None]:
    """(config, hours, cost, GiB/GPU) a tier row shows: on the recommended tier, the recommended
    configuration itself (with owned GPUs it is not the tier's cheapest), else the tier's best."""
    rec, est = plan.recommended, plan.estimate
    if rec is not None and est is not None and rec.gpu == row.gpu:
        return rec, est.hours, est.cost_usd, est.memory_per_gpu_gib
    return row.config, row.hours, row.cost_usd, row.memory_per_gpu_gib


def _approval_badge(plan: Plan) -> tuple[str, str]:
    line = approval_line(plan)
    if plan.approval is None:
        return "NOT APPROVED", "bold yellow"
    if line.startswith("APPROVAL VOID"):
        return "APPROVAL VOID", "bold red"
    return f"approved by {plan.approval.by}", "bold green"


def _against(value: float | None, limit: float | None, unit: str, fmt) -> Text:
    """"7.1 h <= 24.0 h" (green), "$153 > $100 budget OVER" (red), or the bare figure when no limit is set."""
    t = Text(fmt(value), style="bold")
    if value is not None and limit is not None:
        if value <= limit:
            t.append(f" <= {fmt(limit)}", style="green")
        else:
            t.append(f" > {fmt(limit)} {unit} OVER", style="bold red")
    return t


def decision_card(plan: Plan, stale: str = "") -> Text:
    """The decision at a glance: method, configuration, time and cost against the deadline and budget,
    owned vs rented GPUs, the other method priced beside it, memory headroom, approval, warnings."""
    req, la, rec, est = plan.request, plan.lora_alternative, plan.recommended, plan.estimate
    lora = plan.method == "lora"
    method = f"LoRA r{la.rank}{'+DoRA' if la.dora else ''}" if lora else "full SFT"
    t = Text()
    if stale:
        t.append("STALE ", style="bold reverse red")
        t.append(f"{stale}: the card shows the last valid plan\n", style="red")
    t.append(method, style="bold magenta" if lora else "bold cyan")
    t.append(f"  {plan.model.name}  ", style="bold")
    badge, style = _approval_badge(plan)
    t.append(badge, style=style)
    # what runs
    if lora and la.gpu:
        gpu, n, strategy = la.gpu, la.num_gpus or 1, la.strategy or "single"
        hours, cost, mem = la.hours, la.cost_usd, la.memory_per_gpu_gib
        t.append(f"\nrun   {n} x {gpu}, {strategy}")
    elif rec is not None and est is not None:
        gpu, n = rec.gpu, rec.num_gpus
        hours, cost, mem = est.hours, est.cost_usd, est.memory_per_gpu_gib
        accum = f" x accum {rec.grad_accum}" if rec.grad_accum > 1 else ""
        t.append(f"\nrun   {n} x {gpu}, {rec.strategy}, mb {rec.micro_batch_size}{accum}")
    else:
        t.append(f"\nrun   {decision_line(plan)}", style="bold red")
        gpu = None
        hours = cost = mem = None
    if gpu is not None:
        t.append("\ntime  ")
        t += _against(hours, req.deadline_hours, "deadline", _hours)
        t.append("   cost ")
        t += _against(cost, req.budget_usd, "budget", _usd)
        owned = owned_count(plan, gpu)
        t.append("\nGPUs  ")
        if owned >= n:
            t.append(f"owned: {n} of your {owned} {gpu}", style="green")
            t.append(" (cost = on-demand equivalent)", style="dim")
        elif owned:
            t.append(f"{owned} {gpu} owned, rent {n - owned} more", style="bold yellow")
        else:
            t.append(f"rent {n} {gpu}", style="bold")
            if req.have:
                t.append(f" (yours: {', '.join(f'{h.count} {h.gpu}' for h in req.have)})", style="dim")
        capacity = hbm_gib(next((r for r in plan.tiers if r.gpu == gpu), None), gpu)
        if mem is not None and capacity:
            free = capacity - mem
            pct = free / capacity
            t.append("\nmem   ")
            t.append(f"{mem:.1f}/{capacity:.0f} GiB per GPU, ")
            t.append(f"{free:.1f} free ({pct:.0%})",
                     style="bold red" if free < 0 else "yellow" if pct < 0.1 else "green")
    # the other method, priced
    t.append("\nalt   ", style="dim")
    if lora:
        if rec is not None and est is not None:
            ratio = f" ({est.cost_usd / la.cost_usd:.1f}x)" if la.cost_usd else ""
            t.append(f"full SFT {rec.num_gpus} x {rec.gpu}, {_hours(est.hours)}, {_usd(est.cost_usd)}{ratio}", style="dim")
        else:
            t.append("full SFT: nothing fits", style="dim")
    elif la.gpu:
        ratio = f" (1/{la.full_sft_cost_ratio:.1f})" if la.full_sft_cost_ratio else ""
        t.append(f"LoRA r{la.rank} {la.num_gpus} x {la.gpu}, {_hours(la.hours)}, {_usd(la.cost_usd)}{ratio}", style="dim")
    else:
        t.append(f"LoRA: {la.note or '-'}", style="dim")
    if plan.closest is not None and (not lora):
        t.append(f"\nclosest: {plan.closest.why}", style="yellow")
    for w in plan.warnings:
        t.append(f"\n! {w}", style="yellow")
    return t


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


def _sort_key(plan: Plan, mode: str):
    def key(row: TierRow) -> tuple:
        _, hours, cost, _ = shown_row(plan, row)
        value = {"cost": cost, "time": hours}.get(mode)
        return (not row.fits, value if value is not None else float("inf"), row.gpu)
    return key


def same_text(a: Any, b: Any) -> bool:
    """Rich's Text == compares the characters only; a cell whose style changed must be repainted."""
    if not isinstance(a, Text) or not isinstance(b, Text):
        return a == b
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


class PlanView(Vertical):
    """Shows one Plan; ``show(plan)`` replaces it, ``set_stale(reason)`` marks it out of date."""

    sort_mode: reactive[str] = reactive("plan")
    card = getters.query_one("#card", Static)
    why = getters.query_one("#why", Static)
    sources = getters.query_one("#sources", Static)
    tiers = getters.query_one("#tiers", DataTable)
    memory = getters.query_one("#memory", Static)
    details = getters.query_one("#details", Static)

    plan: Plan | None = None
    _last_rec: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: dict[str | None, Text] = {}
        self._breakdowns: dict[tuple[str, str], dict[str, float]] = {}
        self.stale = ""

    def compose(self) -> ComposeResult:
        yield Static("planning...", id="card")
        with VerticalScroll(id="plan-body"):
            yield DataTable(id="tiers", cursor_type="row", zebra_stripes=True, cell_padding=0)
            yield Static("", id="memory")
            yield Static("", id="why")
            with Collapsible(title="rule sources (Enter expands)", collapsed=True, id="sources-box"):
                yield Static("", id="sources")
            yield Static("", id="details")

    def on_mount(self) -> None:
        self._column_keys = self.tiers.add_columns(*(c if i == 0 else f" {c}" for i, c in enumerate(COLUMNS)))

    def on_resize(self) -> None:
        self.call_after_refresh(self._fill_tiers)

    def _set(self, widget: Static, content: Text) -> None:
        """Update only what changed, and re-lay out the screen only when the height may change.

        A layout pass makes Textual repaint every widget on screen (~50 ms here); a same-height update
        repaints this one widget. Same height: as many lines once wrapped at the widget's width.
        """
        old = self._shown.get(widget.id)
        if old is not None and same_text(old, content):
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
        self._show_card()
        why, sources = Text(), Text()
        for f in plan.findings:
            if f.rule_id.startswith(_KEY_PREFIXES):
                why.append(f"{f.rule_id}", style="bold")
                why.append(f" -> {f.verdict}{' (overridden)' if f.overridden else ''}: {f.why}\n")
                sources.append(f"{f.rule_id}: ", style="bold")
                sources.append(f"{f.source}\n", style="dim italic")
        self._set(self.why, why)
        self._set(self.sources, sources)
        self._fill_tiers()
        self._set(self.details, self._details(plan))

    def set_stale(self, reason: str) -> None:
        """Mark the card as out of date ('' = current) while an input is invalid."""
        if reason != self.stale:
            self.stale = reason
            self.set_class(bool(reason), "-stale")
            self._show_card()

    def _show_card(self) -> None:
        if self.plan is not None:
            self._set(self.card, decision_card(self.plan, self.stale))

    # ------------------------------------------------------------------ tiers
    def _recommended_gpu(self) -> str | None:
        return self.plan.recommended.gpu if self.plan and self.plan.recommended else None

    def _reason_width(self, fixed: list[list[str]]) -> int:
        """What the other columns leave of the visible width (the body's, less its scrollbar)."""
        body = self.query_one("#plan-body", VerticalScroll)
        width = body.scrollable_content_region.width or self.size.width
        used = sum(max(len(r[i]) for r in fixed) for i in range(len(fixed[0])))
        return max(MIN_REASON_WIDTH, width - used - 1)

    def _fill_tiers(self) -> None:
        plan = self.plan
        if plan is None:
            return
        table, rec = self.tiers, self._recommended_gpu()
        rows = list(plan.tiers)
        if self.sort_mode != "plan":
            rows.sort(key=_sort_key(plan, self.sort_mode))
        order = [t.gpu for t in rows]
        cells_of: list[list[str]] = []
        for t in rows:
            mark = "*" if t.gpu == rec else " "
            config, hours, cost, mem = shown_row(plan, t)
            if t.fits and config is not None:
                cells = [f"{mark}{t.gpu}", _usd(cost), _hours(hours), f"{mem:.0f}" if mem is not None else "-",
                         "yes" if t.meets_constraints else "no", short_config(config)]
            else:
                cells = [f"{mark}{t.gpu}", "-", "-", "-", "no", short_reason(t)]
            cells_of.append(cells)
        fixed = [[c if i == 0 else f" {c}" for i, c in enumerate(r[:-1])] for r in cells_of + [list(COLUMNS)]]
        reason_width = self._reason_width(fixed)
        same_rows = order == [k.value for k in table.rows]  # in place: far cheaper to repaint than clear()
        if not same_rows:
            table.clear()
        for t, cells in zip(rows, cells_of):
            style = "bold green" if t.gpu == rec else ("dim" if not t.fits else "")
            cells = [c if i == 0 else f" {c}" for i, c in enumerate(cells)]
            cells[-1] = " " + clip(cells[-1][1:], reason_width - 1)
            texts = [Text(c, style=style) for c in cells]
            if not same_rows:
                table.add_row(*texts, key=t.gpu)
                continue
            for col, text in zip(self._column_keys, texts):
                if not same_text(table.get_cell(t.gpu, col), text):
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
        """The selected tier's detail: its configuration and memory against the GPU, or the full reason
        it cannot run."""
        plan = self.plan
        if plan is None or gpu is None:
            self._set(self.memory, Text(""))
            return
        row = next((t for t in plan.tiers if t.gpu == gpu), None)
        capacity = hbm_gib(row, gpu)
        text = Text(f"memory per GPU, {gpu}", style="bold")
        breakdown = config = None
        if row is not None and row.fits:
            config = shown_row(plan, row)[0]
            breakdown = row_breakdown(plan, row) or self._breakdowns.get((plan.plan_sha256, gpu))
            if breakdown is None and config is not None:
                self._pinned_breakdown(plan, row)
        if breakdown is not None and config is not None:
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
            text.append(f"\ndoes not fit: {row.why_not if row else 'not planned'}", style="yellow")
        self._set(self.memory, text)

    @work(thread=True, exclusive=True, group="memory")
    def _pinned_breakdown(self, plan: Plan, row: TierRow) -> None:
        """Fallback until the plan's tier rows carry their breakdown: the planner pinned to that row."""
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
        return t
