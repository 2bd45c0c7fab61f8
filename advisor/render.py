"""Plan -> Markdown (for review in a pull request) and rich tables (for the terminal). Pure text.

A reviewer reads the Markdown top to bottom in two minutes: the decision, why, the configuration,
cost and time, the tiers, hyperparameters, checkpoints, the eval gate, the LoRA alternative,
warnings and the approval status. Rounding happens here and only here.
"""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from advisor.fmt import count as _params
from advisor.fmt import hours as _hours
from advisor.fmt import secs as _secs
from advisor.fmt import usd as _usd
from advisor.memory import plan_ulysses_degree
from advisor.models import Plan, Recommended
from advisor.planfile import verify

_KEY_PREFIXES = ("method.", "parallel.", "constraints.", "fit.")


def config_str(c: Recommended | None) -> str:
    if c is None:
        return "-"
    par = (f", tp {c.tp} x pp {c.pp}" if c.strategy == "megatron" else f", tp {c.tp}" if c.strategy == "fsdp-tp" else
           f", sp {plan_ulysses_degree(c.strategy, c.num_gpus, c.num_nodes)}" if c.strategy == "zero3-sp" else "")
    return (f"{c.num_gpus} x {c.gpu} ({c.num_nodes} node{'s' if c.num_nodes > 1 else ''}), {c.strategy}{par}, "
            f"micro-batch {c.micro_batch_size} x accum {c.grad_accum}, checkpointing {'on' if c.activation_checkpointing else 'off'}")


def approval_line(plan: Plan, plan_file: str = "plan.yaml") -> str:
    """``plan_file``: how the approve hint names the plan (the file it was written to).

    The approval is shown only as verified: "approved by X" only where ``planfile.verify`` passes (the check
    `sftplan verify` and `run` make); else the stamp does not verify and verify's reason is shown, never the
    (possibly forged) approver as if approved. The "APPROVAL VOID" prefix is what the TUI's badge keys on."""
    if plan.approval is None:
        return f"NOT APPROVED - review, then `sftplan approve {plan_file} --by NAME`"
    why = verify(plan)
    if why:
        return f"APPROVAL VOID - NOT VALID: {why}"
    return f"approved by {plan.approval.by} at {plan.approval.at}"


def _owned_note(plan: Plan) -> str:
    """On owned GPUs the dollar figure is what the same hours would cost on demand, not a new bill."""
    rec = plan.recommended
    if rec is not None and any(h.gpu == rec.gpu for h in plan.request.have):
        return " at on-demand rates (the run uses owned GPUs: their time, not a new bill)"
    return ""


def _lora_over(plan: Plan) -> str:
    """LoRA chosen, yet over the budget or past the deadline too: say so, never let it read as fitting."""
    la, req = plan.lora_alternative, plan.request
    over = []
    if la.cost_usd is not None and req.budget_usd is not None and la.cost_usd > req.budget_usd:
        over.append(f"over the {_usd(req.budget_usd)} budget by {_usd(la.cost_usd - req.budget_usd)}")
    if la.hours is not None and req.deadline_hours is not None and la.hours > req.deadline_hours:
        over.append(f"past the {req.deadline_hours:g} h deadline by {_hours(la.hours - req.deadline_hours)}")
    return f" - also {' and '.join(over)}" if over else ""


def decision_line(plan: Plan) -> str:
    method = "full SFT" if plan.method == "full-sft" else "LoRA r16 + DoRA"
    if plan.method == "lora" and plan.lora is not None:  # the plan's configuration is the LoRA one (issue 13)
        return _lora_decision(plan, f"LoRA r{plan.lora.rank}{' + DoRA' if plan.lora.dora else ''}")
    if plan.method == "lora":
        la = plan.lora_alternative
        where = f" on {la.num_gpus} x {la.gpu} ({la.strategy}), {_hours(la.hours)}, {_usd(la.cost_usd)}" if la.gpu else ""
        tail = f"; full SFT would be {config_str(plan.recommended)}" if plan.recommended else ""
        return f"{method}{where}{_lora_over(plan)}{tail}"
    if plan.recommended and plan.estimate:
        return f"{method} on {config_str(plan.recommended)}: {_hours(plan.estimate.hours)}, {_usd(plan.estimate.cost_usd)}"
    if plan.closest:
        return f"{method}: no configuration meets the constraints. {plan.closest.why}"
    return f"{method}: no configuration fits"


def _lora_decision(plan: Plan, method: str) -> str:
    fa = plan.full_sft_alternative
    alt = (f"; full SFT would be {fa.num_gpus} x {fa.gpu} ({fa.strategy}), {_hours(fa.hours)}, {_usd(fa.cost_usd)}"
           if fa is not None and fa.gpu else "")
    if plan.recommended and plan.estimate:
        return (f"{method} on {config_str(plan.recommended)}: {_hours(plan.estimate.hours)}, "
                f"{_usd(plan.estimate.cost_usd)}{alt}")
    la = plan.lora_alternative  # nothing meets the constraints: the cheapest LoRA option, and by how much it misses
    where = f" on {la.num_gpus} x {la.gpu} ({la.strategy}), {_hours(la.hours)}, {_usd(la.cost_usd)}" if la.gpu else ""
    return f"{method}{where}{_lora_over(plan)}{alt}" if where else f"{method}: no configuration fits{alt}"


def _lora_md(plan: Plan) -> list[str]:
    """The adapter a LoRA plan trains, and full SFT priced beside it."""
    lo, fa = plan.lora, plan.full_sft_alternative
    L = ["## Adapter (LoRA)", ""]
    L += _md_table(["field", "value", "chosen by"], [
        ["rank", f"{lo.rank}{' + DoRA' if lo.dora else ''}", lo.chosen_by.get("rank", "-")],
        ["alpha", str(lo.alpha), lo.chosen_by.get("alpha", "-")],
        ["dropout", f"{lo.dropout:g}", lo.chosen_by.get("dropout", "-")],
        ["target modules", ", ".join(lo.target_modules) or "all linear layers", lo.chosen_by.get("target_modules", "-")],
        ["trainable parameters", f"{lo.trainable_params:,}" if lo.trainable_params else "-", "lora.rank"]])
    L += ["## Full SFT alternative", ""]
    if fa is not None and fa.gpu:
        ratio = f"; {fa.cost_ratio:.1f}x this plan's cost" if fa.cost_ratio else ""
        L += [f"{fa.num_gpus} x {fa.gpu} ({fa.strategy}), {fa.memory_per_gpu_gib:.1f} GiB/GPU, {_hours(fa.hours)}, "
              f"{_usd(fa.cost_usd)}{ratio}, learning rate {fa.learning_rate:.1e}. {fa.note}", ""]
    else:
        L += [(fa.note if fa is not None else "") or "-", ""]
    return L


def _key_findings(plan: Plan):
    return [f for f in plan.findings if f.rule_id.startswith(_KEY_PREFIXES)]


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return out + [""]


def memory_line(e, memory_headroom: float) -> str:
    """'66.3 of 79.6 GiB: fits with 13.3 GiB / 17% to spare (10% headroom required)'."""
    if not e.hbm_gib:
        return f"{e.memory_per_gpu_gib:.1f} GiB"
    return (f"{e.memory_per_gpu_gib:.1f} of {e.hbm_gib:.1f} GiB: fits with {e.memory_spare_gib:.1f} GiB / "
            f"{e.memory_spare_gib / e.hbm_gib:.0%} to spare ({memory_headroom:.0%} headroom required)")


def memory_sources(plan: Plan) -> dict[str, str]:
    """component -> the published figure it comes from (data/memory_overheads.yaml), for the recommended
    configuration; {} when the tier is not in this catalog."""
    r = plan.recommended
    if r is None:
        return {}
    try:
        from advisor.catalog import load_catalog
        from advisor.memory_overheads import overhead_sources

        gpu = load_catalog().gpus.get(r.gpu)
        return overhead_sources(gpu, r) if gpu is not None else {}
    except Exception:  # noqa: BLE001 - a missing data file leaves the figures out, never the plan
        return {}


def _memory_md(plan: Plan) -> list[str]:
    """plan.md's memory table: every component on its own line, the non-tensor ones with their figure."""
    e = plan.estimate
    breakdown = dict(e.memory_breakdown_gib or {})
    if not breakdown:
        return []
    src = memory_sources(plan)
    rows = [[k.replace("_", " "), f"{v:.2f}", src.get(k, "the executor's path (advisor/memory.py)" if k in _TENSOR_PARTS else "")]
            for k, v in breakdown.items()]
    rows.append(["total", f"{e.memory_per_gpu_gib:.2f}", memory_line(e, plan.request.memory_headroom)])
    out = ["## Memory per GPU", ""] + _md_table(["component", "GiB", "from"], rows)
    if src.get("assumed"):
        out += [f"Overhead figures assumed for this tier: {src['assumed']}.", ""]
    return out


_TENSOR_PARTS = ("weights", "gradients", "optimizer", "activations", "logits", "gathered_layer")


def tier_rows(plan: Plan) -> list[list[str]]:
    rows = []
    for t in plan.tiers:
        if not t.fits:
            rows.append([t.gpu, "no", t.why_not or "-", "-", "-", "-", f"${t.usd_per_gpu_hour:.2f}", "-"])
            continue
        c = t.config
        cfg = f"{c.num_gpus} GPU {c.strategy} mb{c.micro_batch_size}" if c else "-"
        rows.append([t.gpu, "yes", cfg, f"{t.memory_per_gpu_gib:.1f}", _hours(t.hours), _usd(t.cost_usd),
                     f"${t.usd_per_gpu_hour:.2f}", "yes" if t.meets_constraints else "no"])
    return rows


TIER_HEAD = ["tier", "fits", "best config (or why not)", "GiB/GPU", "time", "cost", "$/GPU-h", "meets"]


def to_markdown(plan: Plan, plan_file: str = "plan.yaml") -> str:
    m, hp, ck, ev, la = plan.model, plan.hyperparameters, plan.checkpointing, plan.evaluation, plan.lora_alternative
    L = [f"# SFT plan: {m.name} ({_params(m.params)} parameters, {m.family})", ""]
    L += [f"**Decision:** {decision_line(plan)}", "", f"**Approval:** {approval_line(plan, plan_file)}", "",
          f"plan_sha256 `{plan.plan_sha256}` - catalog `{plan.catalog_sha256[:12] or '-'}`", ""]
    L += ["## Why", ""]
    for f in _key_findings(plan):
        L.append(f"- **{f.rule_id}** -> {f.verdict}{' (overridden)' if f.overridden else ''}: {f.why}")
    what = f"LoRA r{plan.lora.rank}" if plan.method == "lora" and plan.lora else "full SFT"
    L += ["", f"## Recommended configuration ({what}, what `sftplan run` executes)", ""]
    if plan.recommended and plan.estimate:
        r, e = plan.recommended, plan.estimate
        L += _md_table(["field", "value"], [
            ["GPU", f"{r.num_gpus} x {r.gpu} ({r.num_nodes} node{'s' if r.num_nodes > 1 else ''})"],
            ["strategy", r.strategy + (f" (tp {r.tp}, pp {r.pp})" if r.strategy == "megatron" else
                                       f" (tp {r.tp} x fsdp {r.num_gpus // r.tp})" if r.strategy == "fsdp-tp" else
                                       f" (fsdp {r.num_gpus // r.num_nodes} per node x {r.num_nodes} replicas)"
                                       if r.strategy == "hsdp" else
                                       f" (Ulysses sp {plan_ulysses_degree(r.strategy, r.num_gpus, r.num_nodes)} per node x {r.num_nodes} replicas, "
                                       f"ZeRO-3 over all {r.num_gpus})" if r.strategy == "zero3-sp" else "")],
            ["micro-batch x grad accum", f"{r.micro_batch_size} x {r.grad_accum}"],
            ["activation checkpointing", "on" if r.activation_checkpointing else "off"], ["precision", r.precision]])
        L += ["## Cost and time", ""]
        L += _md_table(["estimate", "value"], [
            ["memory per GPU", memory_line(e, plan.request.memory_headroom)], ["host RAM per node", f"{e.cpu_memory_per_node_gib:.1f} GiB"],
            ["time", _hours(e.hours) + (f" (of which {_hours(e.overhead_hours)} start-up, weight load and checkpoint writes)"
                                        if e.overhead_hours else "")],
            ["cost", _usd(e.cost_usd) + _owned_note(plan)], ["tokens", f"{e.tokens_total:,}"],
            ["throughput", f"{e.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, MFU {e.mfu:.0%}"],
            ["steps", f"{e.steps_per_epoch:,} per epoch, {e.total_steps:,} total, {_secs(e.step_time_s)} each"]])
        L += _memory_md(plan)
    elif plan.closest:
        c = plan.closest
        L += [f"None meets the constraints. Closest: {config_str(c.config)} - {_hours(c.hours)}, {_usd(c.cost_usd)}; "
              f"short by {_usd(c.shortfall_usd)} and {c.shortfall_hours:,.1f} h.", ""]
    else:
        L += ["Nothing fits: see the tiers table.", ""]
    L += ["## GPU tiers", ""] + _md_table(TIER_HEAD, tier_rows(plan))
    L += ["## Hyperparameters", ""]
    L += _md_table(["field", "value", "chosen by"], [
        ["learning_rate", f"{hp.learning_rate:.2e}", hp.chosen_by.get("learning_rate", "-")],
        ["lr_scheduler", f"{hp.lr_scheduler}, warmup {hp.warmup_ratio:.0%}", hp.chosen_by.get("lr_scheduler", "-")],
        ["weight_decay", f"{hp.weight_decay:g}", hp.chosen_by.get("weight_decay", "-")],
        ["epochs", str(hp.epochs), hp.chosen_by.get("epochs", "-")],
        ["max_seq_len", str(hp.max_seq_len), hp.chosen_by.get("max_seq_len", "-")],
        ["global batch", f"{hp.global_batch_size} sequences (~{hp.global_batch_tokens:,} tokens)", hp.chosen_by.get("global_batch_size", "-")]])
    L += ["## Checkpoints", "", f"Every {ck.every}, keep the last {ck.keep_last}: {ck.disk_gib_per_checkpoint:,.1f} GiB each, "
          f"{ck.disk_gib:,.1f} GiB of disk.", ""]
    L += ["## Evaluation gate", "",
          f"Golden set {ev.golden.path + ' (' + str(ev.golden.rows) + ' rows)' if ev.golden else '(none given)'} after every "
          f"{ev.after_every}; tolerance {ev.tolerance:.0%}" + (f", min score {ev.min_golden_score:g}" if ev.min_golden_score is not None else "") + ".", ""]
    L += _md_table(["deploy check", "lm-eval task (metric)", "max regression (points)", "required"],
                   [[d.name, f"{d.task} ({d.metric})" if d.task else ("the eval gate" if d.name.lower() == "golden set"
                                                                       else "none: a manual step"),
                     f"{d.max_regression:g}", "yes" if d.required else "no"] for d in ev.deploy_suite])
    if ev.deploy_hours is not None:
        limit = f", {ev.deploy.limit} examples per task" if ev.deploy and ev.deploy.limit else ""
        L += [f"Deploy suite (`sftplan evaluate`, base and tuned model, forward passes only{limit}): "
              f"{_hours(ev.deploy_hours)}, {_usd(ev.deploy_cost_usd)} on the recommended GPUs (indicative; "
              "assumptions in advisor/evalcost.py; local tasks are not priced).", ""]
    if plan.method == "lora" and plan.lora is not None:
        L += _lora_md(plan)
    elif la.gpu:
        L += ["## LoRA alternative", ""]
        ratio = f"; full SFT costs {la.full_sft_cost_ratio:.1f}x this" if la.full_sft_cost_ratio else ""
        L += [f"LoRA rank {la.rank}{' + DoRA' if la.dora else ''}: {la.num_gpus} x {la.gpu} ({la.strategy}), "
              f"{la.memory_per_gpu_gib:.1f} GiB/GPU, {_hours(la.hours)}, {_usd(la.cost_usd)}{ratio}. {la.note}", ""]
    else:
        L += ["## LoRA alternative", "", la.note or "-", ""]
    L += ["## Warnings", ""] + ([f"- {w}" for w in plan.warnings] or ["- none"]) + [""]
    L += ["## All findings", ""] + explain_lines(plan)
    return "\n".join(L).rstrip() + "\n"


def explain_lines(plan: Plan) -> list[str]:
    out = []
    for f in plan.findings:
        over = " (overridden by the request)" if f.overridden else ""
        out += [f"- **{f.rule_id}** -> {f.verdict}{over}: {f.why}", f"  - source: \"{f.source}\""]
    return out + [""]


def to_explain_text(plan: Plan) -> str:
    lines = []
    for f in plan.findings:
        over = "  [overridden]" if f.overridden else ""
        lines += [f"{f.rule_id}: {f.verdict}{over}", f"  why:    {f.why}", f"  source: {f.source}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- terminal (rich)
def renderables(plan: Plan, plan_file: str = "plan.yaml") -> Group:
    head = Text(f"{plan.model.name} ({_params(plan.model.params)}): ", style="bold") + Text(decision_line(plan))
    why = Table(title="Why", show_header=False, expand=False)
    for f in _key_findings(plan):
        why.add_row(f.rule_id, f.verdict + (" (overridden)" if f.overridden else ""), f.why)
    tiers = Table(title="GPU tiers (cheapest meeting the deadline, else fastest)")
    for h in TIER_HEAD:
        tiers.add_column(h, overflow="fold")
    for r in tier_rows(plan):
        tiers.add_row(*r, style="dim" if r[1] == "no" else None)
    hp = plan.hyperparameters
    hps = Table(title="Hyperparameters", show_header=False)
    hps.add_row("learning rate", f"{hp.learning_rate:.2e}", hp.chosen_by.get("learning_rate", ""))
    hps.add_row("schedule", f"cosine, warmup {hp.warmup_ratio:.0%}, weight decay {hp.weight_decay:g}", "hparams.schedule")
    hps.add_row("epochs / seq", f"{hp.epochs} epochs, {hp.max_seq_len} tokens", "hparams.epochs")
    hps.add_row("global batch", f"{hp.global_batch_size} seqs (~{hp.global_batch_tokens:,} tokens)", "hparams.batch")
    la = plan.lora_alternative
    tail = [Text(f"Memory per GPU: {memory_line(plan.estimate, plan.request.memory_headroom)}")] if plan.estimate else []
    tail += [Text(f"Checkpoints: every epoch, keep {plan.checkpointing.keep_last}, {plan.checkpointing.disk_gib:,.1f} GiB"),
            Text(f"LoRA alternative: {la.num_gpus} x {la.gpu}, {_hours(la.hours)}, {_usd(la.cost_usd)}" if la.gpu else "LoRA alternative: -")]
    if plan.method == "lora" and plan.lora is not None:
        fa, lo = plan.full_sft_alternative, plan.lora
        tail[-1] = Text(f"Adapter: r{lo.rank}{' + DoRA' if lo.dora else ''}, alpha {lo.alpha}, dropout {lo.dropout:g}, "
                       f"{', '.join(lo.target_modules) or 'all linear'}; full SFT alternative: "
                       + (f"{fa.num_gpus} x {fa.gpu}, {_hours(fa.hours)}, {_usd(fa.cost_usd)}" if fa and fa.gpu else "-"))
    tail += [Text(f"warning: {w}", style="yellow") for w in plan.warnings]
    tail.append(Text(f"Approval: {approval_line(plan, plan_file)}", style="bold"))
    return Group(head, why, tiers, hps, *tail)


def to_text(plan: Plan, width: int = 120, plan_file: str = "plan.yaml") -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(renderables(plan, plan_file))
    return buf.getvalue()
