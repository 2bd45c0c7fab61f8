"""plan(request, catalog) -> Plan: search GPU tiers x GPU counts x strategies x micro-batch x checkpointing.

The search is pruned so that it stays well under 50 ms: the parallelism rule picks the strategies
per tier (single/DDP when the model fits one GPU, else FSDP, ZeRO-3 offload only when nothing fits
sharded, Megatron only at frontier scale with nvidia_stack); the smallest GPU count that fits is
found first, the micro-batch and checkpointing are chosen there and reused for larger counts.
Estimates are cached per configuration. The search itself lives in advisor/plan_search.py.

Choosing: per tier, the cheapest configuration that meets the deadline, else the fastest. Overall:
with owned hardware (have) the owned tiers come first: the fastest fit within the owned count (those
GPUs are already paid for), else the cheapest on that tier beyond it (rent the rest); otherwise the
cheapest that meets budget and deadline. At frontier scale with nvidia_stack, Megatron comes first.
Cost is always priced at the catalog's on-demand rate, owned GPUs included (their opportunity cost).
When nothing meets the constraints, `closest` names the option with the smallest relative shortfall.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

from advisor import rules
from advisor.architecture import active_param_count, param_count, resolve_model
from advisor.cost import checkpoint_bytes
from advisor.errors import UserError
from advisor.models import (
    OVER_MAX_SEQ_LEN_RULE, Closest, Finding, Hyperparameters, LoraAlternative, ModelSummary, Plan, PlanEstimate, PlanRequest, TierRow,
)
from advisor.planfile import with_hash
from advisor.plan_search import Cand, EstimateCache, Miss, Search, rec_of  # noqa: F401 - EstimateCache: public here
from advisor.run_limits import ESTIMATED_ONLY, estimated_only_reason, run_refusal
from advisor.units import GIB



def _round_small(x: float, decimals: int = 3, sig: int = 3) -> float:
    """Round to `decimals` places, but keep `sig` significant digits for values below 1.

    A tiny model's step time (0.0004 s) or hours would otherwise print as 0.
    """
    if x == 0 or not math.isfinite(x) or abs(x) >= 1:
        return round(x, decimals)
    return round(x, max(decimals, sig - 1 - math.floor(math.log10(abs(x)))))


def plan(request: PlanRequest, catalog, cache: EstimateCache | None = None, calibration=None) -> Plan:
    """The hashed plan. ``cache``: estimates kept across plans by the caller (the TUI keeps one per session).
    ``calibration`` (advisor.calibration.Calibration) corrects every estimate with the factors of its
    configuration class, and the plan records which."""
    req = request
    _check_request(req)
    if req.gpu and req.num_gpus:  # the pins contradict the catalog: refused as `sftplan estimate` refuses them
        catalog.gpu(req.gpu, field="gpu").check_scales_to(req.num_gpus)
    model = resolve_model(req.model)
    params, active = param_count(model), active_param_count(model)
    warnings: list[str] = []
    max_seq_len, seq_len = _seq_len(req, model, warnings)
    tokens_per_example = min(req.dataset.avg_tokens, seq_len)
    batch_tokens_per_seq = seq_len if req.packing else tokens_per_example
    epochs, f_epochs = rules.rule_epochs(req.dataset.examples, req.epochs)
    tokens_total = req.dataset.examples * tokens_per_example * epochs
    gbs_target = rules.global_batch_sequences(batch_tokens_per_seq, req.dataset.examples)

    tiers = _tiers(req, catalog)
    owned = {h.gpu: h.count for h in req.have}
    for i, h in enumerate(req.have):
        catalog.gpu(h.gpu, field=f"have[{i}].gpu")  # unknown owned GPU: UserError with did-you-mean
    frontier = params >= rules.FRONTIER_PARAMS
    megatron = frontier and req.nvidia_stack

    cache = cache if cache is not None else EstimateCache()
    full = Search(model, req, seq_len, tokens_total, gbs_target, trainable="full", megatron=megatron,
                  epochs=epochs, shared=cache)
    full.calibration = calibration
    by_tier = {g.id: full.tier(g) for g in tiers}
    rows = [_tier_row(g, by_tier[g.id], req, full.misses) for g in tiers]
    rec, closest, f_constraints = _choose(by_tier, req, owned, megatron)

    lora = Search(model, req, seq_len, tokens_total, gbs_target, trainable="lora", megatron=False,
                  epochs=epochs, shared=cache)
    lora.calibration = calibration
    lora_by_tier = {g.id: lora.tier(g, quick=True) for g in tiers}
    lora_rec, lora_closest, lora_constraints = _choose(lora_by_tier, req, owned, False, method="LoRA")
    lora_pick = lora_rec or _cheapest([c for cs in lora_by_tier.values() for c in cs])

    fits_any = [c for cs in by_tier.values() for c in cs]
    full_cost = rec.cost_usd if rec else (min(c.cost_usd for c in fits_any) if fits_any else None)
    method, findings = rules.decide_method(req, full_cost)

    chosen = rec or _closest_cand(by_tier, req, owned)
    if chosen is not None:
        findings.append(rules.rule_parallelism(chosen.strategy, chosen.num_gpus, chosen.num_nodes, params, chosen.gpu.gpus_per_node,
                                               chosen.tp))
    nm = rules.rule_no_megatron(params, req.nvidia_stack)
    if nm:
        findings.append(nm)
    findings += f_constraints
    if not fits_any:
        findings.append(rules.rule_nothing_fits(model.name, req.max_gpus))

    hp, f_hp = _hyperparameters(req, params, epochs, f_epochs, max_seq_len, batch_tokens_per_seq, chosen, gbs_target)
    findings += f_hp
    ckpt_strategy = chosen.strategy if chosen is not None else "fsdp"
    ckpt, f_ck = rules.rule_checkpointing(checkpoint_bytes(model, req.precision, ckpt_strategy))
    evaluation, f_ev = rules.rule_evaluation(req)
    findings += [f_ck, *f_ev]
    lora_alt = _lora_alternative(lora_pick, rec or chosen)
    if lora_alt.full_sft_cost_ratio:
        findings.append(rules.rule_lora_price(lora_alt.full_sft_cost_ratio, lora_alt.cost_usd, (rec or chosen).cost_usd))
    findings += rules.rule_data_check(req, chosen.hours if chosen else None, chosen.cost_usd if chosen else None,
                                      chosen.overhead_hours if chosen else 0.0)
    warnings += [f.why for f in findings if f.verdict in ("warning", rules.BLOCKS_APPROVAL)]
    if chosen is not None and not req.packing and chosen.micro_batch_size > 1 and req.dataset.avg_tokens < seq_len // 2:
        warnings.append(f"no packing: micro-batches of {chosen.micro_batch_size} are padded to the longest example; consider packing")
    if full.sp_refused_for_packing:
        warnings.append(f"packing: on {', '.join(full.sp_refused_for_packing)} one sequence's activations do not fit "
                        "sharded, and zero3-sp (sequence parallel) runs unpacked rows only (DeepSpeed's Ulysses on sdpa "
                        "drops the packed-sequence mask): plan without packing to consider it")
    if model.source == "generic-size":
        warnings.append(f"{model.name}: a generic Llama-shaped architecture, not a real model's config")

    out = Plan(
        request=req,
        model=ModelSummary(name=model.name, family=model.family, source=model.source, params=params, active_params=active,
                           note="generic Llama-shaped architecture" if model.source == "generic-size" else ""),
        method=method, findings=findings,
        recommended=rec_of(rec, req.precision) if rec else None,
        estimate=_plan_estimate(rec, tokens_total, epochs, gbs_target, req) if rec else None,
        closest=closest, tiers=rows, hyperparameters=hp, checkpointing=ckpt,
        evaluation=_priced_deploy(evaluation, chosen, params, active),
        lora_alternative=lora_alt, warnings=warnings, catalog_sha256=getattr(catalog, "sha256", ""),
        calibration=_calibration_used(calibration, [c for c in (rec or chosen, lora_pick) if c is not None]),
    )
    if out.calibration is not None:
        cal_finding = rules.rule_calibration(out.calibration)
        out.findings.append(cal_finding)
        if cal_finding.verdict == "warning":
            out.warnings.append(cal_finding.why)
    if method == "lora":
        out = _as_lora_plan(out, req, model, params, epochs, f_epochs, max_seq_len, batch_tokens_per_seq, gbs_target,
                            tokens_total, lora_rec, lora_closest, lora_constraints, lora_pick, rec or chosen,
                            [_tier_row(g, lora_by_tier[g.id], req, lora.misses) for g in tiers])
        out = out.replace(**{"evaluation": _priced_deploy(evaluation, lora_pick, params, active)})
    cfg = out.recommended or (out.closest.config if out.closest else None)
    if cfg is not None and cfg.strategy in ESTIMATED_ONLY:
        out = out.replace(**{"warnings": [*out.warnings, estimated_only_warning(cfg.strategy)]})
    return with_hash(out)


def estimated_only_warning(strategy: str) -> str:
    return f"strategy {estimated_only_reason(strategy)} (this plan is a what-if; approve a plan with another strategy to run it)"


def _first_repeat(keys: list[str]) -> tuple[int, int] | None:
    """(index of the first key given again, index where it was first given), or None."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        if first.setdefault(key, i) != i:
            return i, first[key]
    return None


def _check_request(req: PlanRequest) -> None:
    """What the schema cannot see field by field: pins that contradict each other, deploy tasks the suite cannot run.
    The same rules `sftplan estimate` applies to a configuration (advisor/specs.py TrainConfig)."""
    if req.num_gpus is not None and req.num_gpus > req.max_gpus:
        raise UserError(f"pinned to {req.num_gpus} GPUs, above max_gpus {req.max_gpus}", field="num_gpus")
    why = run_refusal(req.strategy, req.method, bool(req.packing))  # what executor/preflight.py would refuse
    if why:
        raise UserError(why, field="strategy")
    repeat = _first_repeat(req.goals)
    if repeat:
        raise UserError(f"'{req.goals[repeat[0]]}' is given twice: give each goal once", field=f"goals[{repeat[0]}]")
    if {"lora-below-bar", "lora-cleared-bar"} <= set(req.goals):
        raise UserError("'lora-below-bar' and 'lora-cleared-bar' say opposite things of the LoRA run tried: give the "
                        "one that happened", field="goals")
    repeat = _first_repeat([h.gpu.lower() for h in req.have])
    if repeat:
        i, first = repeat
        raise UserError(f"{req.have[i].gpu} is given twice (have[{first}] too): give the GPUs you own of a tier once, "
                        "with their count", field=f"have[{i}].gpu")
    if req.gpu is not None and not req.gpu.strip():
        raise UserError("empty GPU tier: give a catalog id (`sftplan catalog` lists them), or leave it out",
                        field="gpu")
    if req.strategy == "single" and req.num_gpus not in (None, 1):
        raise UserError(f"'single' needs num_gpus 1, got {req.num_gpus}", field="strategy")
    repeat = _first_repeat([t.name.lower() for t in req.deploy_tasks])
    for i, t in enumerate(req.deploy_tasks):
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in t.name):
            raise UserError(f"the check name {t.name!r} holds a control character or line break: give it on one line",
                            field=f"deploy_tasks[{i}].name")
        if repeat and repeat[0] == i:
            raise UserError(f"'{t.name}' is given twice (deploy_tasks[{repeat[1]}] too): results are read by check "
                            "name, so give each check once", field=f"deploy_tasks[{i}].name")
        if ":" in t.metric:  # lm-eval metric names ('acc,none') hold no ':'; NAME=TASK:METRIC:MAX_DROP misread
            raise UserError(f"metric {t.metric!r} holds a ':' (lm-eval metric names have none): a max drop after "
                            "the metric must be a number", field=f"deploy_tasks[{i}].metric")
    path = req.deploy_include_path
    if path is not None and not Path(path).expanduser().is_dir():
        raise UserError(f"{path}: no such folder (lm-eval task YAMLs)", field="deploy_include_path")


def _calibration_used(calibration, cands: list[Cand]):
    """What the plan records of the calibration: its file, hash, the factors the chosen configurations used."""
    if calibration is None:
        return None
    from advisor.calibration import foreign_versions, installed_versions
    from advisor.models import CalibrationUsed

    here = installed_versions()
    foreign = sorted({v for c in calibration.classes.values() for v in foreign_versions(c, here)})
    notes = sorted({c.est.calibration for c in cands if c.est.calibration})
    return CalibrationUsed(path=calibration.path, sha256=calibration.sha256, applied=notes, foreign_versions=foreign)


def _as_lora_plan(out: Plan, req, model, params, epochs, f_epochs, max_seq_len, seq_tokens, gbs_target, tokens_total,
                  lora_rec, lora_closest, lora_constraints, lora_pick, full_cand, lora_rows) -> Plan:
    """A LoRA plan's recommended configuration, estimate, hyperparameters, checkpoints and adapter are the
    LoRA ones (advisor/lora_plan.py), and so are the tiers; full SFT is priced beside it. The full-SFT
    findings that describe the configuration (parallelism, constraints, batch, learning rate,
    checkpoints) are replaced."""
    from advisor.lora_plan import lora_plan_updates

    hp, f_hp = _hyperparameters(req, params, epochs, f_epochs, max_seq_len, seq_tokens, lora_pick, gbs_target)
    parallel = rules.rule_parallelism(lora_pick.strategy, lora_pick.num_gpus, lora_pick.num_nodes, params,
                                      lora_pick.gpu.gpus_per_node, lora_pick.tp) if lora_pick else None
    updates, f_lora = lora_plan_updates(
        req=req, model=model, params=params, lora_rec=rec_of(lora_rec, req.precision) if lora_rec else None,
        lora_est=_plan_estimate(lora_rec, tokens_total, epochs, gbs_target, req) if lora_rec else None,
        hp=hp, hp_findings=f_hp, parallel_finding=parallel, full_cand=full_cand,
        full_lr=out.hyperparameters.learning_rate)
    replaced = ("parallel.", "constraints.", "hparams.", "checkpoint.", "method.lora-price")
    findings = [f for f in out.findings if not f.rule_id.startswith(replaced)]
    findings += [f for f in (*lora_constraints, *f_lora) if f is not None]
    if full_cand is not None and updates["full_sft_alternative"].cost_ratio:
        alt = updates["full_sft_alternative"]
        findings.append(Finding(rule_id="method.full-sft-price", verdict=f"full SFT costs {alt.cost_ratio:.1f}x LoRA",
                                why=f"full SFT {alt.gpu} x{alt.num_gpus} {alt.strategy} ${alt.cost_usd:,.2f} vs LoRA "
                                    f"${updates['estimate'].cost_usd:,.2f} (same estimator)", source=rules.S_LORA_DEFAULT))
    closest = None
    if lora_rec is None and lora_closest is not None:
        closest = lora_closest
    warnings = [w for w in out.warnings if w not in {f.why for f in out.findings if f.verdict == "warning"}]
    warnings += [f.why for f in findings if f.verdict == "warning"]
    return out.replace(**dict(updates, findings=findings, closest=closest, warnings=warnings, tiers=lora_rows))


# --------------------------------------------------------------------------- inputs
def _seq_len(req: PlanRequest, model, warnings: list[str]) -> tuple[int, int]:
    """(max_seq_len for training, sequence length the memory fit uses).

    Without packing the longest padded batch is the longest example, so the fit may use the measured
    maximum, but only when it was counted with the model's own tokenizer (an approximation could be short).
    """
    seq = req.max_seq_len
    if seq > model.max_context:
        if "max_seq_len" in req.fields_set:
            raise UserError(f"{seq} exceeds {model.name}'s context of {model.max_context} tokens", field="max_seq_len")
        warnings.append(f"max_seq_len lowered from {seq} to the model's context {model.max_context}")
        seq = model.max_context
    fit = seq
    ds = req.dataset
    warnings.extend(long_rows_warnings(ds, seq))
    if ds.long_rows is None and ds.avg_tokens > seq:  # no measured file says so: the mean itself is over the cut
        warnings.append(f"dataset.avg_tokens {ds.avg_tokens} is above max_seq_len {seq}: examples are cut to {seq} "
                        "tokens and priced so; raise max_seq_len, or check the mean")
    if not req.packing and ds.token_max and ds.token_count_method.startswith("tokenizer"):
        fit = max(1, min(seq, ds.token_max))
    return seq, fit


def long_rows_warnings(ds, seq: int) -> list[str]:
    """What happens to rows over max_seq_len (DatasetSpec.over_max_seq_len), with the plan's count of them."""
    lr = ds.long_rows
    if lr is None:
        return []
    if lr.max_seq_len != seq:
        return [f"rows over max_seq_len were counted against {lr.max_seq_len}, the plan trains at {seq}: the run "
                f"counts again and applies the rule '{ds.over_max_seq_len}' ({OVER_MAX_SEQ_LEN_RULE[ds.over_max_seq_len]})"]
    if not (lr.truncated or lr.refused):
        return []
    where = ", ".join(lr.first) + (" ..." if lr.truncated + lr.refused > len(lr.first) else "")
    return [f"{lr.truncated + lr.refused} of {ds.examples} rows are over max_seq_len {seq} ({lr.truncated} to be "
            f"truncated, {lr.refused} refused; {where}; {lr.counted_by}). Rule '{ds.over_max_seq_len}': "
            f"{OVER_MAX_SEQ_LEN_RULE[ds.over_max_seq_len]}"]


def _tiers(req: PlanRequest, catalog) -> list:
    from advisor.throughput import with_network

    if req.gpu:
        return [with_network(catalog.gpu(req.gpu, field="gpu"), req.network_gbit_per_s_per_node)]
    # the host CPU tier is for runs on this machine (the demo, CPU tests): only when pinned with gpu: cpu
    return [with_network(catalog.gpus[k], req.network_gbit_per_s_per_node) for k in catalog.gpus
            if catalog.gpus[k].vendor != "cpu"]


# --------------------------------------------------------------------------- choosing
def _meets(c: Cand, req: PlanRequest) -> bool:
    return (req.deadline_hours is None or c.hours <= req.deadline_hours) and (req.budget_usd is None or c.cost_usd <= req.budget_usd)


def _cheapest(cands: list[Cand]) -> Cand | None:
    """Cheapest; costs within 2% count as a tie, won by fewer GPUs (no 128-GPU job to save cents)."""
    if not cands:
        return None
    floor = min(c.cost_usd for c in cands) * 1.02
    return min((c for c in cands if c.cost_usd <= floor), key=lambda c: (c.num_gpus, round(c.cost_usd, 6), c.hours, c.key()))


def _fastest(cands: list[Cand]) -> Cand | None:
    return min(cands, key=lambda c: (round(c.hours, 9), c.cost_usd, c.num_gpus, c.key()), default=None)


def _tier_best(cands: list[Cand], req: PlanRequest) -> Cand | None:
    ok = [c for c in cands if req.deadline_hours is None or c.hours <= req.deadline_hours]
    return _cheapest(ok) if ok else _fastest(cands)


def _choose(by_tier: dict[str, list[Cand]], req: PlanRequest, owned: dict[str, int], megatron: bool,
            method: str = "full SFT"):
    """(recommended or None, closest or None, findings) under budget, deadline and owned hardware; ``method``
    names the method these candidates train in the findings."""
    pool = [c for cs in by_tier.values() for c in cs]
    findings: list[Finding] = []
    if megatron and any(c.strategy == "megatron" for c in pool):
        pool = [c for c in pool if c.strategy == "megatron"]
    if owned:
        mine = [c for c in pool if c.gpu.id in owned]
        if mine:
            pool = mine
            within = [c for c in mine if c.num_gpus <= owned[c.gpu.id] and _meets(c, req)]
            if within:  # owned GPUs are already paid for: use them for speed
                return _fastest(within), None, [_owned_finding(_fastest(within), owned)]
        elif pool:
            findings.append(rules.rule_renting(_owned_str(owned), method))
    ok = [c for c in pool if _meets(c, req)]
    if ok:
        best = _cheapest(ok)
        if owned and best.gpu.id in owned:
            findings.append(_owned_finding(best, owned))
        return best, None, findings
    if not pool:
        return None, None, findings
    close = _closest_of(pool, req)
    return None, close, findings + [rules.rule_unmet(close.why)]


def _owned_str(owned: dict[str, int]) -> str:
    return ", ".join(f"{g}:{n}" for g, n in owned.items())


def _owned_finding(c: Cand, owned: dict[str, int]) -> Finding:
    return rules.rule_owned(c.gpu.id, c.num_gpus, owned.get(c.gpu.id, 0))


def _shortfall(c: Cand, req: PlanRequest) -> tuple[float, float, float]:
    usd = max(0.0, c.cost_usd - req.budget_usd) if req.budget_usd else 0.0
    hours = max(0.0, c.hours - req.deadline_hours) if req.deadline_hours else 0.0
    rel = (usd / req.budget_usd if req.budget_usd else 0.0) + (hours / req.deadline_hours if req.deadline_hours else 0.0)
    return rel, usd, hours


def _closest_of(pool: list[Cand], req: PlanRequest) -> Closest:
    c = min(pool, key=lambda c: (round(_shortfall(c, req)[0], 9), c.cost_usd, c.key()))
    _, usd, hours = _shortfall(c, req)
    parts = []
    if usd:
        parts.append(f"${usd:,.2f} over the ${req.budget_usd:,.2f} budget")
    if hours:
        parts.append(f"{hours:,.1f} h past the {req.deadline_hours:g} h deadline")
    why = (f"nothing meets the constraints; closest: {c.gpu.id} x{c.num_gpus} {c.strategy}, "
           f"${c.cost_usd:,.2f} in {c.hours:,.1f} h, " + " and ".join(parts))
    return Closest(config=rec_of(c, req.precision), hours=round(c.hours, 3), cost_usd=round(c.cost_usd, 2),
                   shortfall_usd=round(usd, 2), shortfall_hours=round(hours, 3), why=why)


def _closest_cand(by_tier, req, owned) -> Cand | None:
    pool = [c for cs in by_tier.values() for c in cs]
    if owned and any(c.gpu.id in owned for c in pool):
        pool = [c for c in pool if c.gpu.id in owned]
    if not pool:
        return None
    return min(pool, key=lambda c: (round(_shortfall(c, req)[0], 9), c.cost_usd, c.key()))


def _breakdown_gib(e) -> dict[str, float]:
    return {k: round(v / GIB, 2) for k, v in e.memory.to_dict().items()}


def _unmet(c: Cand, req: PlanRequest) -> str | None:
    """The constraint a fitting configuration misses, short: 'budget $1,234/$500', 'deadline 5.2/2 h'."""
    parts = []
    if req.budget_usd is not None and c.cost_usd > req.budget_usd:
        parts.append(f"budget ${c.cost_usd:,.0f}/${req.budget_usd:,.0f}")
    if req.deadline_hours is not None and c.hours > req.deadline_hours:
        parts.append(f"deadline {c.hours:,.1f}/{req.deadline_hours:g} h")
    return ", ".join(parts) or None


def _tier_row(gpu, cands: list[Cand], req: PlanRequest, misses: dict[str, Miss]) -> TierRow:
    best = _tier_best(cands, req)
    if best is None:
        miss = misses.get(gpu.id)
        return TierRow(gpu=gpu.id, fits=False, usd_per_gpu_hour=gpu.usd_per_gpu_hour,
                       why_not=miss.why_not if miss else "does not fit", hbm_gib=gpu.hbm_gib,
                       memory_breakdown_gib=_breakdown_gib(miss.est) if miss and miss.est else None,
                       binding_constraint=miss.binding_constraint if miss else "does not fit")
    return TierRow(gpu=gpu.id, fits=True, config=rec_of(best, req.precision), memory_per_gpu_gib=round(best.est.memory_per_gpu_bytes / GIB, 2),
                   hours=round(best.hours, 3), cost_usd=round(best.cost_usd, 2), usd_per_gpu_hour=gpu.usd_per_gpu_hour,
                   meets_constraints=_meets(best, req), memory_breakdown_gib=_breakdown_gib(best.est), hbm_gib=gpu.hbm_gib,
                   binding_constraint=_unmet(best, req))


# --------------------------------------------------------------------------- plan parts
def _steps(c: Cand | None, gbs: int, req: PlanRequest, seq_tokens: int) -> tuple[int, int]:
    """(global batch sequences, steps per epoch), at least 1 step."""
    if c is not None:
        gbs = c.micro_batch_size * c.grad_accum * c.dp
    if req.packing:
        seqs = math.ceil(req.dataset.examples * min(req.dataset.avg_tokens, seq_tokens) / max(1, seq_tokens))
    else:
        seqs = req.dataset.examples
    return gbs, max(1, math.ceil(seqs / gbs))


def _hyperparameters(req, params, epochs, f_epochs, seq_len, seq_tokens, c: Cand | None, gbs_target):
    findings = [f_epochs]
    lr, f_lr = rules.rule_learning_rate(params, req.base, req.learning_rate)
    findings = f_lr + findings
    gbs, steps_per_epoch = _steps(c, gbs_target, req, seq_tokens)
    warmup, f_w = rules.rule_warmup(steps_per_epoch * epochs)
    wd, f_wd = rules.rule_weight_decay(req.dataset.examples)
    findings += [f_w, f_wd]
    if c is not None:
        findings.append(rules.rule_batch(c.micro_batch_size, c.grad_accum, c.dp, seq_tokens, c.activation_checkpointing))
    lr_rule = "hparams.learning-rate-override" if req.learning_rate else "hparams.learning-rate"
    hp = Hyperparameters(
        learning_rate=lr, warmup_ratio=warmup, weight_decay=wd, epochs=epochs, max_seq_len=seq_len,
        global_batch_size=gbs, global_batch_tokens=gbs * seq_tokens,
        chosen_by={"learning_rate": lr_rule, "lr_scheduler": "hparams.schedule", "warmup_ratio": "hparams.schedule",
                   "weight_decay": "hparams.weight-decay", "epochs": "hparams.epochs", "max_seq_len": "request.max_seq_len",
                   "global_batch_size": "hparams.batch", "micro_batch_size": "hparams.batch", "grad_accum": "hparams.batch",
                   "activation_checkpointing": "hparams.batch"},
    )
    return hp, findings


def _plan_estimate(c: Cand, tokens_total: int, epochs: int, gbs_target: int, req: PlanRequest) -> PlanEstimate:
    e = c.est
    seq_tokens = c.seq_len if req.packing else min(req.dataset.avg_tokens, c.seq_len)
    _, spe = _steps(c, gbs_target, req, seq_tokens)
    return PlanEstimate(
        memory_per_gpu_gib=round(e.memory_per_gpu_bytes / GIB, 2),
        memory_breakdown_gib=_breakdown_gib(e),
        cpu_memory_per_node_gib=round(e.cpu_memory_per_node_bytes / GIB, 2),
        hours=_round_small(c.hours), cost_usd=round(c.cost_usd, 2), tokens_total=tokens_total,
        overhead_hours=round(c.overhead_hours, 3),
        tokens_per_s_per_gpu=round(e.tokens_per_s_per_gpu, 1), step_time_s=_round_small(e.step_time_s), mfu=round(e.mfu, 3),
        steps_per_epoch=spe, total_steps=spe * epochs,
        hbm_gib=round(e.hbm_bytes / GIB, 2), memory_spare_gib=round(e.headroom_bytes / GIB, 2),
        step_overhead_s=_round_small(e.step_overhead_s),
        raw_step_time_s=_round_small(e.raw_step_time_s) if e.calibration else None,
        raw_tokens_per_s_per_gpu=round(e.raw_tokens_per_s_per_gpu, 1) if e.calibration else None,
    )


def _lora_alternative(lc: Cand | None, full: Cand | None) -> LoraAlternative:
    if lc is None:
        return LoraAlternative(note="LoRA fits no tier either")
    ratio = round(full.cost_usd / lc.cost_usd, 2) if full is not None and lc.cost_usd > 0 else None
    return LoraAlternative(
        gpu=lc.gpu.id, num_gpus=lc.num_gpus, strategy=lc.strategy, memory_per_gpu_gib=round(lc.est.memory_per_gpu_bytes / GIB, 2),
        hours=round(lc.hours, 3), cost_usd=round(lc.cost_usd, 2), full_sft_cost_ratio=ratio,
        note="rank 16 with DoRA; estimated as LoRA r16 (DoRA's small extra compute not modelled)",
    )


def _priced_deploy(evaluation, c: Cand | None, params: int, active: int):
    """The deploy suite's forward-pass hours and cost on the chosen configuration's GPUs (advisor.evalcost)."""
    if c is None:
        return evaluation
    from advisor.cost import cost_usd
    from advisor.evalcost import deploy_cost

    dc = deploy_cost([d.task for d in evaluation.deploy_suite], params=params, active_params=active, gpu=c.gpu,
                     num_gpus=c.num_gpus, limit=evaluation.deploy.limit if evaluation.deploy else None)
    return evaluation.replace(**{"deploy_hours": _round_small(dc.hours),
                                         "deploy_cost_usd": round(cost_usd(dc.hours, c.num_gpus, c.gpu), 2)})
