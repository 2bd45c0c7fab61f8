"""The right panel: the decision card (always on screen), then, scrolling, the tier table, the selected
tier's detail, why (rule sources collapsed), hyperparameters and the full-SFT / LoRA comparison."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import getters, on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Collapsible, DataTable, Static

from advisor.catalog import load_catalog
from advisor.fmt import hours as _hours
from advisor.fmt import usd as _usd
from advisor.models import Plan, Recommended, TierRow
from advisor.render import approval_line, config_str, decision_line

_KEY_PREFIXES = ("method.", "parallel.", "constraints.", "fit.")
MEMORY_COLORS = {"weights": "blue", "gradients": "magenta", "optimizer": "yellow", "activations": "green",
                 "logits": "cyan", "gathered_layer": "red", "overhead": "bright_black",  # plans before the split
                 "cuda_context": "bright_black", "cublas_workspace": "grey50", "nccl_buffers": "bright_blue",
                 "fragmentation": "grey39"}
# The reason column comes last: it takes the width the others leave, so every column stays on screen.
COLUMNS = ("tier", "cost", "time", "GiB", "meets", "config/why")
STRATEGY_SHORT = {"zero3-offload": "z3-off", "megatron": "megatron", "fsdp": "fsdp", "zero3": "zero3",
                  "single": "single", "zero3-sp": "z3-sp"}
MIN_REASON_WIDTH = 10


# ---------------------------------------------------------------------- what a row / the card says
# TierRow carries binding_constraint, hbm_gib and memory_breakdown_gib: the view never re-plans a row.
# Each is read here in one place, with a fallback for plan files written before rows carried them.

_NEEDS = re.compile(r"needs ([\d,.]+) GiB per GPU.*?; ([\d,.]+) GiB available")


def short_reason(row: TierRow) -> str:
    """Why a tier cannot run, in a few words ("HBM 45.1/22.5 GiB"); the full text is in the row's detail."""
    short = row.binding_constraint
    if short:
        return str(short)
    why = row.why_not or "-"
    m = _NEEDS.search(why)
    if m:
        need, have = (float(g.replace(",", "")) for g in m.groups())
        return f"HBM {need:,.0f}/{have:,.0f} GiB"
    head = re.split(r"[;(:]", why, maxsplit=1)[0].strip()
    return head or why


_SHORTER = (  # applied one after another until the reason fits its column
    lambda s: s.replace(" usable", ""),
    # the row's cost and time are in their own columns: say only which limit they break
    lambda s: re.sub(r"over (\$[\d,.]+), over ([\d,.]+ h)", r"over \1 & \2",
                     re.sub(r"deadline [\d,.]+/([\d,.]+ h)", r"over \1",
                            re.sub(r"budget \$[\d,.]+/(\$[\d,.]+)", r"over \1", s))),
    lambda s: s.replace("GPU memory", "HBM").replace("host RAM", "RAM"),
    lambda s: re.sub(r"(\d[\d,]*)\.\d+", r"\1", s),  # 45.1 -> 45
    lambda s: s.replace(" GiB", "G"),
    lambda s: re.sub(r"(?<=\d),(?=\d{3})", "", s),  # 1,577 -> 1577
)


def fit_reason(text: str, width: int) -> str:
    """The reason in at most ``width`` characters: abbreviated step by step, clipped only as a last resort."""
    for shorten in _SHORTER:
        if len(text) <= width:
            return text
        text = shorten(text)
    return clip(text, width)


def hbm_gib(row: TierRow | None, gpu: str) -> float:
    if row is not None and row.hbm_gib:
        return float(row.hbm_gib)
    gpus = load_catalog().gpus  # an older plan file: the catalog module's cached copy, not a re-read
    return float(gpus[gpu].hbm_gib) if gpu in gpus else 0.0


def row_breakdown(plan: Plan, row: TierRow) -> dict[str, float] | None:
    """The memory breakdown of a tier's configuration, if the plan carries it."""
    if plan.estimate and plan.recommended and plan.recommended.gpu == row.gpu:
        return dict(plan.estimate.memory_breakdown_gib)
    return dict(row.memory_breakdown_gib) if row.memory_breakdown_gib else None


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


def decision_card(plan: Plan, stale: str = "", width: int = 0) -> Text:
    """The decision at a glance: method, configuration, time and cost against the deadline and budget,
    owned vs rented GPUs, the other method priced beside it, memory headroom, approval, warnings (one
    line each, clipped to ``width``; in full under the plan's details)."""
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
    if plan.calibration is not None:
        t += calibration_line(plan)
    # the other method, priced
    t.append("\nalt   ", style="dim")
    if lora:
        if rec is not None and est is not None:
            t.append(f"full SFT {rec.num_gpus} x {rec.gpu}, {_hours(est.hours)}, {_usd(est.cost_usd)}", style="dim")
        else:
            t.append("full SFT: nothing fits", style="dim")
    elif la.gpu:
        t.append(f"LoRA r{la.rank} {la.num_gpus} x {la.gpu}, {_hours(la.hours)}, {_usd(la.cost_usd)}", style="dim")
    else:
        t.append(f"LoRA: {la.note or '-'}", style="dim")
    if plan.closest is not None and (not lora):
        t.append(f"\nclosest: {plan.closest.why}", style="yellow")
    for w in plan.warnings:
        t.append("\n" + (clip(f"! {w}", width) if width > 0 else f"! {w}"), style="yellow")
    return t


def calibration_line(plan: Plan) -> Text:
    """The card's line for a plan made with a calibration: calibrated vs raw throughput and step time (as
    `sftplan plan --calibration` and `estimate` print them), or that no factor matched."""
    est, cal = plan.estimate, plan.calibration
    t = Text("\ncalib ", style="bold")
    name = Path(cal.path).name
    if est is None or est.raw_tokens_per_s_per_gpu is None or not cal.applied or all(
            "raw estimate" in a for a in cal.applied):
        t.append(f"{name}: no factor for this configuration, raw estimate", style="dim")
        return t
    t.append(f"{est.tokens_per_s_per_gpu:,.0f} tok/s/GPU (raw {est.raw_tokens_per_s_per_gpu:,.0f}), "
             f"step {est.step_time_s:.3g} s (raw {est.raw_step_time_s:.3g})", style="cyan")
    t.append(f"  {name}", style="dim")
    if cal.foreign_versions:
        t.append(" other versions", style="yellow")
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
        self.call_after_refresh(self._show_card)

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
            self._set(self.card, decision_card(self.plan, self.stale, self.card.content_region.width))

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
                meets = t.meets_constraints or t.gpu == rec
                cells = [f"{mark}{t.gpu}", _usd(cost), _hours(hours), f"{mem:.0f}" if mem is not None else "-",
                         "yes" if meets else "no",
                         short_config(config) if meets or not t.binding_constraint else t.binding_constraint]
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
            cells[-1] = " " + fit_reason(cells[-1][1:], reason_width - 1)
            texts = [Text(c, style=style) for c in cells]
            if not same_rows:
                table.add_row(*texts, key=t.gpu)
                continue
            for col, text in zip(self._column_keys, texts):
                if not same_text(table.get_cell(t.gpu, col), text):
                    table.update_cell(t.gpu, col, text, update_width=True)
        if rec in order and (not same_rows or rec != self._last_rec):  # a plan may list no tier of its GPU
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
        if row is None:
            self._set(self.memory, text + Text("\nnot planned", style="dim"))
            return
        config = shown_row(plan, row)[0] if row.fits else None
        breakdown = row_breakdown(plan, row)  # when it does not fit: the failed attempt's
        if config is not None:
            text.append(f" ({config_str(config)})", style="dim")
        if breakdown:
            text.append("\n")
            text += memory_bar(breakdown, capacity)
            text.append("\n")
            for name, gib in breakdown.items():
                if gib:
                    text.append("█ ", style=MEMORY_COLORS.get(name, "white"))
                    text.append(f"{name} {gib:.1f}  ")
        elif row.fits and row.memory_per_gpu_gib is not None:  # a plan file from before rows carried one
            text.append("\n")
            text += memory_bar({"total": row.memory_per_gpu_gib}, capacity)
        if not row.fits:
            text.append(f"\ndoes not fit: {row.why_not or row.binding_constraint or '-'}", style="yellow")
        elif row.binding_constraint and row.gpu != self._recommended_gpu():
            text.append(f"\nmisses the constraints: {row.binding_constraint}", style="yellow")
        self._set(self.memory, text)

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
        if plan.warnings:
            t.append("warnings\n", style="bold")
        for w in plan.warnings:
            t.append(f"  {w}\n", style="yellow")
        return t
