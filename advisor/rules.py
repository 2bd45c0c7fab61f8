"""The advisor's rules: one small function per rule, each returning a Finding that cites its sentence.

Sentences are quoted verbatim from the practitioner's guide (docs/SOURCES.md; the layouts it does not name, from
the libraries that run them: docs/SOURCES_BEYOND_GUIDE.md). Where the guide
gives no number (epochs, the LoRA learning rate itself, batch size), the rule says it is a house
default or names the paper it takes the number from. Rules judge; they never validate input.
"""

from __future__ import annotations

from advisor.fmt import count as _n
from advisor.memory import plan_ulysses_degree
from advisor.models import Checkpointing, DeployCheck, DeploySettings, Evaluation, Finding, PlanRequest
from advisor.units import GIB

# --------------------------------------------------------------------------- the guide's sentences
S_PARALLEL = (
    "FSDP for 8B to 70B on 8 GPUs. DeepSpeed ZeRO-3 with CPU offload when you barely overflow VRAM. "
    "Megatron-LM only at frontier scale and only if you already run NVIDIA's stack."
)
S_MULTINODE = "Multi-node FSDP or DeepSpeed ZeRO-3, checkpoint at every epoch, eval gate before any deploy."
S_FULL_WHEN = (
    "When LoRA has been tried and benchmarked below the bar, when you are training a new tokenizer surface, "
    "when you need a deeply re-tasked base (rare in 2026), when you have the data volume (>10k) and the "
    "compute to support it."
)
S_LORA_WHEN = (
    "Under 10k examples (memorization risk, LoRA wins on regularization), when LoRA cleared the bar "
    "(do not pay the full SFT tax for marginal gain), when you need fast iteration cycles."
)
S_LORA_DEFAULT = (
    "On most enterprise builds, LoRA at rank 16 with DoRA matches full SFT within 1 to 3 points at 1% of "
    "the cost. Where the gap is real and the project requires it (hard reasoning, deep re-tasking), we move "
    "to full SFT with eyes open."
)
S_SOME_ARE_NOT = (
    "Most enterprise fine-tunes are well-served by a low-rank perturbation. Some are not: deep re-tasking "
    "(changing the model's fundamental skill), training a new tokenizer's surface, or pushing past LoRA's "
    "accuracy ceiling on hard reasoning. For those, full SFT updates every parameter directly."
)
S_HPARAMS = (
    "Two orders of magnitude lower than LoRA. Cosine with 1% to 3% warmup. Weight decay 0.05 to 0.1. "
    "Aggressive LR destroys alignment on Instruct bases."
)
S_CHECKPOINT = (
    "Disk is cheap, model regret is not. Keep at least the last 3 epoch checkpoints. "
    "Run the golden eval set after each."
)
S_GATE = (
    "Standard benchmarks (MMLU-Pro, IFEval), domain golden set, safety eval (HarmBench), bias audit. "
    "Full SFT can drop on benchmarks you did not train for, the suite catches it."
)
S_QLORA_LR = "QLoRA (Dettmers et al., 2023), Table 9: LoRA learning rate 2e-4 for 7B-13B, 1e-4 for 33B-65B"
S_HOUSE = "sftplan house default (the guide gives no number for this)"
# transformers' DistributedConfig docstring (transformers 5.24, distributed/configuration_utils.py), on dp_replicate_size
S_HSDP = (
    "We suggest it for multi-node training: plain FSDP all-gathers parameters and reduce-scatters gradients across "
    "all devices at every step, so this traffic goes over the slower inter-node links. Set `dp_replicate_size` to the "
    "number of nodes and `fsdp_size * tp_size` to the number of devices per node: the sharding traffic then stays on "
    "the fast intra-node links, and only the gradient all-reduce crosses nodes. The cost is more memory per device, "
    "since parameters are sharded within a node."
)
S_FSDP_TP = (
    "PyTorch tutorial 'Large Scale Transformer model training with Tensor Parallel (TP)' (Liang, Liu): Tensor "
    "Parallel inside a node with Fully Sharded Data Parallel across; Megatron-LM's column/row-parallel layers "
    "(Shoeybi et al. 2019) split each layer's weights and activations, which FSDP alone does not"
)
S_ULYSSES = (
    "Ulysses Sequence parallelism allows us to shard the inputs to the attention computation along the sequence "
    "dimension and compute the attention normally, but using only a slice of attention heads on each GPU"
)
S_MEMORY = "sftplan memory estimate (ZeRO, Rajbhandari et al. 2020; activations per Korthikanti et al. 2022)"

MIN_FULL_SFT_EXAMPLES = 10_000
FRONTIER_PARAMS = 175 * 10**9  # GPT-3 scale and above: where tensor + pipeline parallelism pays off
FULL_SFT_GOALS = ("lora-below-bar", "new-tokenizer", "deep-retask", "hard-reasoning")
LORA_GOALS = ("lora-cleared-bar", "fast-iteration")
GLOBAL_BATCH_TOKENS_TARGET = 256 * 1024  # ~0.25M tokens per optimizer step: common for SFT at 7B-70B


def _f(rule_id: str, verdict: str, why: str, source: str, overridden: bool = False) -> Finding:
    return Finding(rule_id=rule_id, verdict=verdict, why=why, source=source, overridden=overridden)


# --------------------------------------------------------------------------- method
def rule_under_10k(req: PlanRequest) -> Finding | None:
    n = req.dataset.examples
    if n >= MIN_FULL_SFT_EXAMPLES:
        return None
    return _f("method.under-10k", "lora", f"{n:,} examples is under 10k: memorization risk, LoRA regularizes", S_LORA_WHEN)


def rule_lora_cleared_bar(req: PlanRequest) -> Finding | None:
    if "lora-cleared-bar" not in req.goals:
        return None
    return _f("method.lora-cleared-bar", "lora", "goal lora-cleared-bar: LoRA already met the bar; full SFT would buy a marginal gain", S_LORA_WHEN)


def rule_fast_iteration(req: PlanRequest) -> Finding | None:
    if "fast-iteration" not in req.goals:
        return None
    return _f("method.fast-iteration", "lora", "goal fast-iteration: LoRA runs are shorter and cheaper to repeat", S_LORA_WHEN)


def rule_full_sft_reasons(req: PlanRequest) -> Finding | None:
    reasons = [g for g in req.goals if g in FULL_SFT_GOALS]
    if not reasons:
        return None
    source = S_SOME_ARE_NOT if {"deep-retask", "hard-reasoning", "new-tokenizer"} & set(reasons) else S_FULL_WHEN
    return _f("method.full-sft-reason", "full-sft", f"goal(s) {', '.join(reasons)}: a low-rank update is not enough", source)


def rule_data_volume(req: PlanRequest) -> Finding | None:
    n = req.dataset.examples
    if n < MIN_FULL_SFT_EXAMPLES:
        return None
    return _f("method.data-volume", "full-sft-possible", f"{n:,} examples is over 10k: enough data for full SFT", S_FULL_WHEN)


def rule_budget_covers(req: PlanRequest, full_sft_cost_usd: float | None) -> Finding | None:
    """Full SFT needs 'the compute to support it': the cheapest full-SFT option within the budget."""
    if req.budget_usd is None:
        return None
    if full_sft_cost_usd is None:
        return _f("method.compute", "lora", "no full-SFT configuration fits the hardware allowed", S_FULL_WHEN)
    if full_sft_cost_usd <= req.budget_usd:
        return _f("method.compute", "full-sft-possible",
                  f"cheapest full SFT ${full_sft_cost_usd:,.0f} is within the ${req.budget_usd:,.0f} budget", S_FULL_WHEN)
    return _f("method.compute", "lora",
              f"cheapest full SFT ${full_sft_cost_usd:,.0f} exceeds the ${req.budget_usd:,.0f} budget", S_FULL_WHEN)


def rule_default_lora() -> Finding:
    return _f("method.default-lora", "lora", "no reason for full SFT given: LoRA rank 16 with DoRA is the default", S_LORA_DEFAULT)


def decide_method(req: PlanRequest, full_sft_cost_usd: float | None) -> tuple[str, list[Finding]]:
    """Auto method from the rules; a forced method is honoured and marks the rules it overrides."""
    lora = [f for f in (rule_under_10k(req), rule_lora_cleared_bar(req), rule_fast_iteration(req)) if f]
    full = rule_full_sft_reasons(req)
    volume = rule_data_volume(req)
    compute = rule_budget_covers(req, full_sft_cost_usd)
    findings = [f for f in (*lora, full, volume, compute) if f]
    if lora:
        auto = "lora"
    elif full and (compute is None or compute.verdict != "lora"):
        auto = "full-sft"
    else:
        auto = "lora"
        if not full:
            findings.append(rule_default_lora())
    if req.method == "auto" or req.method == auto:
        return auto, findings
    forced = req.method
    out = []
    for f in findings:
        against = f.verdict in ("lora", "full-sft") and f.verdict != forced
        out.append(f.replace(**{"overridden": True}) if against else f)
    out.append(_f("method.forced", forced, f"method {forced} requested; the rules chose {auto}", "the request (method)"))
    return forced, out


# --------------------------------------------------------------------------- parallelism
def rule_parallelism(strategy: str, num_gpus: int, num_nodes: int, params: int, gpus_per_node: int,
                     tp: int = 1) -> Finding:
    size = _n(params)
    if strategy == "hsdp":
        return _f("parallel.hsdp", "hsdp",
                  f"{size} sharded inside each of {num_nodes} nodes ({num_gpus // max(1, num_nodes)} GPUs) and replicated "
                  "across them: the parameter all-gathers stay on the node's links, only gradients cross the network "
                  "(the cheapest layout the estimate found that fits)", S_HSDP)
    if strategy == "fsdp-tp":
        return _f("parallel.fsdp-tp", "fsdp-tp",
                  f"{size}: tensor parallel {tp} inside a node splits every layer's weights and activations, FSDP shards "
                  f"over the {num_gpus // max(1, tp)} data-parallel ranks, so the parameter traffic (and what a "
                  "gathered layer holds) shrinks by the tp size (the cheapest layout the estimate found that fits)",
                  S_FSDP_TP)
    if strategy == "zero3-sp":
        sp = plan_ulysses_degree(strategy, num_gpus, num_nodes)
        return _f("parallel.zero3-sp", "zero3-sp",
                  f"{size}: the model states fit sharded, one sequence's activations do not; ZeRO-3 over {num_gpus} GPUs "
                  f"with Ulysses sequence parallel {sp} (the GPUs of a node) holds 1/{sp} of every sequence per GPU "
                  "(DeepSpeed ALST, arXiv 2506.13996; DeepSpeed-Ulysses, arXiv 2309.14509)", S_ULYSSES)
    if strategy == "single":
        return _f("parallel.single-gpu", "single", f"{size} parameters fit one GPU", S_MEMORY)
    if strategy == "ddp":
        return _f("parallel.ddp", "ddp", f"{size} fits one GPU; {num_gpus} GPUs replicate it for speed (DDP)", S_MEMORY)
    if strategy == "megatron":
        return _f("parallel.megatron", "megatron", f"{size} is frontier scale and the team runs NVIDIA's stack", S_PARALLEL)
    if strategy.startswith("zero3-offload"):
        return _f("parallel.zero3-offload", strategy,
                  f"{size} does not fit sharded on the GPUs allowed; it fits with the optimizer in host RAM on {num_gpus} GPU(s)",
                  S_PARALLEL)
    if num_nodes > 1:
        return _f("parallel.multi-node", strategy,
                  f"{size} sharded across {num_nodes} nodes x {gpus_per_node} GPUs ({num_gpus} GPUs)", S_MULTINODE)
    return _f("parallel.fsdp", strategy, f"{size} does not fit one GPU; sharded on {num_gpus} GPUs of one node", S_PARALLEL)


def rule_no_megatron(params: int, nvidia_stack: bool) -> Finding | None:
    if params < FRONTIER_PARAMS or nvidia_stack:
        return None
    return _f("parallel.no-megatron", "fsdp",
              f"{_n(params)} is frontier scale, but nvidia_stack is not set: multi-node FSDP, not Megatron-LM",
              S_PARALLEL)


# --------------------------------------------------------------------------- fit and constraints
def rule_nothing_fits(model_name: str, max_gpus: int) -> Finding:
    return _f("fit.nothing-fits", "no configuration", f"full SFT of {model_name} fits no tier within {max_gpus} GPUs",
              S_MEMORY)


def rule_renting(owned: str, method: str = "full SFT") -> Finding:
    """Owned GPUs were given, but ``method`` (full SFT, or the LoRA plan's "LoRA") fits none of them: the plan rents."""
    return _f("constraints.have", "renting", f"{method} fits none of the owned GPUs ({owned})", S_MEMORY)


def rule_owned(gpu_id: str, num_gpus: int, have: int) -> Finding:
    """The chosen configuration on an owned tier: within the owned count, or renting the rest."""
    if num_gpus <= have:
        why = f"uses {num_gpus} of the {have} owned {gpu_id} GPUs (already paid for: the fastest fit on them)"
    else:
        why = f"needs {num_gpus} {gpu_id} GPUs; {have} owned, rent {num_gpus - have} more"
    return _f("constraints.have", f"{gpu_id} x{num_gpus}", why, "the request (have)")


def rule_unmet(why: str) -> Finding:
    """Nothing meets the budget and deadline: no recommendation; ``why`` names the closest and its miss."""
    return _f("constraints.unmet", "no recommendation", why, "the request (budget_usd / deadline_hours)")


def rule_lora_price(ratio: float, lora_cost_usd: float, full_cost_usd: float) -> Finding:
    return _f("method.lora-price", f"full SFT costs {ratio:.1f}x LoRA",
              f"LoRA r16+DoRA ${lora_cost_usd:,.2f} vs full SFT ${full_cost_usd:,.2f} "
              "(same estimator: frozen bf16 weights, adapters trained)", S_LORA_DEFAULT)


# --------------------------------------------------------------------------- hyperparameters
def lora_learning_rate(params: int) -> float:
    """The LoRA rate assumed for the model size (QLoRA's table; extrapolated outside 7B-65B)."""
    if params < 1e9:
        return 5e-4
    if params <= 20e9:
        return 2e-4
    if params <= 100e9:
        return 1e-4
    return 5e-5


def rule_learning_rate(params: int, base: str, override: float | None) -> tuple[float, list[Finding]]:
    lora_lr = lora_learning_rate(params)
    lr = lora_lr / 100
    why = f"LoRA rate for {_n(params)} assumed {lora_lr:.0e} ({S_QLORA_LR}); two orders lower: {lr:.1e}"
    findings = []
    if base == "instruct":
        lr /= 2
        why += f"; halved for an Instruct base: {lr:.1e}"
        findings.append(_f("hparams.instruct-alignment", "warning",
                           "Instruct base: keep the learning rate low, aggressive LR destroys alignment; watch IFEval and HarmBench",
                           S_HPARAMS))
    findings.insert(0, _f("hparams.learning-rate", f"{lr:.1e}", why, S_HPARAMS, overridden=override is not None))
    if override is not None:
        findings.append(_f("hparams.learning-rate-override", f"{override:.1e}",
                           f"learning_rate {override:g} overrides the rules' {lr:.1e}", "the request (learning_rate)"))
        if override > lr * 3:
            findings.append(_f("hparams.lr-too-high", "warning",
                               f"learning_rate {override:g} is {override / lr:.0f}x the rules' rate", S_HPARAMS))
        lr = override
    return lr, findings


def rule_epochs(examples: int, given: int | None) -> tuple[int, Finding]:
    if given is not None:
        return given, _f("hparams.epochs", str(given), f"epochs {given} requested", "the request (epochs)")
    epochs = 3 if examples < 100_000 else 2 if examples < 1_000_000 else 1
    why = f"{examples:,} examples: 3 epochs under 100k, 2 under 1M, 1 from 1M (more data, fewer passes)"
    return epochs, _f("hparams.epochs", str(epochs), why, S_HOUSE)


def rule_warmup(total_steps: int) -> tuple[float, Finding]:
    ratio = 0.03 if total_steps < 1_000 else 0.02 if total_steps < 10_000 else 0.01
    why = f"{total_steps:,} optimizer steps: warmup {ratio:.0%} ({max(1, round(total_steps * ratio))} steps), cosine decay"
    return ratio, _f("hparams.schedule", f"cosine, warmup {ratio:.0%}", why, S_HPARAMS)


def rule_weight_decay(examples: int) -> tuple[float, Finding]:
    wd = 0.1 if examples < 100_000 else 0.05
    why = f"{examples:,} examples: weight decay {wd} (more regularization for smaller data)"
    return wd, _f("hparams.weight-decay", str(wd), why, S_HPARAMS)


def global_batch_sequences(tokens_per_sequence: int, examples: int) -> int:
    """Sequences per optimizer step for ~0.25M tokens, but at least ~20 steps per epoch on small data."""
    target = max(1, GLOBAL_BATCH_TOKENS_TARGET // max(1, tokens_per_sequence))
    return max(1, min(target, examples // 20 or 1))


def rule_batch(micro: int, grad_accum: int, dp: int, seq_tokens: int, ac: bool) -> Finding:
    gbs = micro * grad_accum * dp
    why = (f"micro-batch {micro} x grad-accum {grad_accum} x {dp} data-parallel = {gbs} sequences "
           f"(~{gbs * seq_tokens:,} tokens) per step; activation checkpointing {'on' if ac else 'off'} from the memory fit")
    return _f("hparams.batch", f"{gbs} sequences/step", why, S_MEMORY)


# --------------------------------------------------------------------------- checkpoints and evaluation
def rule_checkpointing(bytes_per_checkpoint: int) -> tuple[Checkpointing, Finding]:
    gib = bytes_per_checkpoint / GIB
    ck = Checkpointing(keep_last=3, disk_gib_per_checkpoint=round(gib, 2), disk_gib=round(gib * 3, 2))
    why = f"checkpoint every epoch, keep the last 3: {gib:,.1f} GiB each (weights + optimizer), {gib * 3:,.1f} GiB of disk"
    return ck, _f("checkpoint.every-epoch", "every epoch, keep 3", why, S_CHECKPOINT)


DEPLOY_SUITE = (
    ("MMLU-Pro", 2.0),
    ("IFEval", 3.0),
    ("golden set", 0.0),
    ("HarmBench", 1.0),
    ("bias audit", 1.0),
)


# The lm-evaluation-harness task behind each check of the suite: (task, metric key, higher is better).
# HarmBench ships no lm-eval task (its judge is a classifier model the user provides): a plan that needs it
# names a task of its own through the request's deploy_tasks; the golden set is the eval gate itself.
DEPLOY_TASKS: dict[str, tuple[str, str, bool]] = {
    "MMLU-Pro": ("mmlu_pro", "exact_match,custom-extract", True),
    "IFEval": ("ifeval", "prompt_level_strict_acc,none", True),
    "bias audit": ("crows_pairs_english", "pct_stereotype,none", False),
}


def standard_deploy_suite() -> list[DeployCheck]:
    """The guide's suite (DEPLOY_SUITE) with the lm-eval task of each check that has one."""
    suite = []
    for name, max_drop in DEPLOY_SUITE:
        task, metric, higher = DEPLOY_TASKS.get(name, (None, None, True))
        suite.append(DeployCheck(name=name, max_regression=max_drop, task=task, metric=metric, higher_is_better=higher))
    return suite


def deploy_suite(req: PlanRequest) -> list[DeployCheck]:
    """The guide's suite with the lm-eval task of each check, plus the request's own deploy tasks. A request task
    named as a check of the suite (names match case-insensitively, as results are read) takes that check's place:
    how a plan gives HarmBench, which has no lm-eval task, a task of its own, or another allowed drop to a check."""
    suite = standard_deploy_suite()
    for t in req.deploy_tasks:
        check = DeployCheck(name=t.name, max_regression=t.max_regression, required=t.required, task=t.task,
                            metric=t.metric, higher_is_better=t.higher_is_better)
        same = next((i for i, c in enumerate(suite) if c.name.lower() == t.name.lower()), None)
        if same is None:
            suite.append(check)
        else:
            suite[same] = check
    return suite


def rule_deploy_tasks(suite: list[DeployCheck]) -> Finding | None:
    """A required check with no task that `sftplan evaluate` can run stays a manual step: say so."""
    manual = [d.name for d in suite if d.required and d.task is None and d.name.lower() != "golden set"]
    if not manual:
        return None
    return _f("eval.deploy-task-missing", "warning",
              f"no lm-eval task runs {', '.join(manual)}: add one to the request's deploy_tasks (HarmBench needs its "
              "classifier model and a task YAML of yours), or bring its results to `sftplan promote --deploy-results`",
              S_GATE)


def rule_evaluation(req: PlanRequest) -> tuple[Evaluation, list[Finding]]:
    suite = deploy_suite(req)
    settings = DeploySettings(limit=req.deploy_limit, include_path=req.deploy_include_path)
    ev = Evaluation(golden=req.golden, tolerance=req.gate_tolerance, min_golden_score=req.min_golden_score,
                    deploy_suite=suite, deploy=settings)
    golden = req.golden.path if req.golden else "the golden set (none given yet: add one to the request)"
    findings = [
        _f("eval.golden-each-epoch", "after every epoch",
           f"score {golden} after each epoch; stop if it regresses more than {req.gate_tolerance:.0%}", S_CHECKPOINT),
        _f("eval.deploy-gate", "gate before deploy",
           "deploy only if " + ", ".join(f"{d.name} drops <= {d.max_regression:g} pts"
                                         + (f" ({d.task})" if d.task else "") for d in suite), S_GATE),
    ]
    missing = rule_deploy_tasks(suite)
    if missing:
        findings.append(missing)
    if req.golden is None:
        findings.append(_f("eval.no-golden", "warning", "no golden set: the epoch gate has nothing to score", S_CHECKPOINT))
    return ev, findings


# --------------------------------------------------------------------------- data check (advisor/datacheck.py)
S_DATA = ("Sourcing, PII redaction (Presidio), synthetic data (Distilabel, Nemotron), DEITA quality scoring, "
          "MinHash + SemDedup, labeling vendors, feedback loops.")
BLOCKS_APPROVAL = "blocks approval"


# The request field a finding asks the user to set, by rule id: the faces say how (the CLI's flag comes from
# advisor/cli/fields.py, the TUI's widget from WIDGET_OF_FIELD); the finding's text names the field, never a flag.
FIELD_OF_FINDING = {"data.pii": "data_check.pii_decision", "data.check-skipped": "data_check.skipped"}


def rule_data_check(req: PlanRequest, hours: float | None, cost_usd: float | None,
                    overhead_hours: float = 0.0) -> list[Finding]:
    """Findings from the data check's summary: PII without a decision blocks approval; golden leakage
    inflates the gate; duplicates cost the share of training time their tokens take."""
    dc = req.data_check
    if dc is None:
        return []
    if dc.skipped:
        return [_f("data.check-skipped", "warning", "the data check was skipped (data_check.skipped): duplicates, PII and "
                   "golden leakage were not looked for (sftplan data check TRAIN.jsonl)", S_DATA)]
    out = []
    where = "; ".join(dc.pii_first) + (" ..." if dc.pii_hits > len(dc.pii_first) else "")
    if dc.pii_hits and dc.pii_decision is None:
        out.append(_f("data.pii", BLOCKS_APPROVAL,
                      f"{dc.pii_hits} PII hit(s) ({', '.join(dc.pii_kinds)}) in the training data: {where}. The plan is not "
                      "approvable until the request says how (data_check.pii_decision): redact (plan on a redacted copy) or "
                      "accept",
                      S_DATA))
    elif dc.pii_decision == "accept" and dc.pii_hits:
        out.append(_f("data.pii", "accepted", f"{dc.pii_hits} PII hit(s) ({', '.join(dc.pii_kinds)}) kept by decision "
                      f"(data_check.pii_decision accept): {where}", S_DATA))
    elif dc.pii_decision == "redact" and dc.redacted_from is not None:
        out.append(_f("data.pii", "redacted", f"PII replaced by <KIND> placeholders (presidio-anonymizer) in a copy of "
                      f"{dc.redacted_from.path}; the plan trains on the copy"
                      + (f"; {dc.pii_hits} hit(s) remain: {where}" if dc.pii_hits else ""), S_DATA))
    if dc.leakage:
        out.append(_f("data.golden-leakage", "warning",
                      f"{dc.leakage} golden row(s) are in the training data ({'; '.join(dc.leakage_first)}"
                      f"{' ...' if dc.leakage > len(dc.leakage_first) else ''}): the gate scores the model on answers it "
                      "trained on, so its verdicts are inflated; remove them from one of the two files", S_GATE))
    dups = dc.exact_duplicate_rows + dc.near_duplicate_rows
    if dups:
        share = dups / max(1, dc.rows)
        saving = ""
        if hours is not None and cost_usd is not None:
            train_h = max(0.0, hours - overhead_hours)
            saved_h = train_h * share
            saved_usd = cost_usd * (saved_h / hours) if hours else 0.0
            usd = f"~${saved_usd:,.2f}" if saved_usd >= 0.01 else "under $0.01"
            saving = f"; removing them would save ~{saved_h:.2g} h and {usd} of this plan"
        out.append(_f("data.duplicates", "warning",
                      f"{dups} of {dc.rows} rows ({share:.1%}) are duplicates ({dc.exact_duplicate_rows} exact, "
                      f"{dc.near_duplicate_rows} near; first: {', '.join(dc.duplicate_first)}){saving} "
                      "(sftplan data dedup TRAIN.jsonl -o DEDUP.jsonl keeps the first of each group)", S_DATA))
    return out


CALIBRATION_SOURCE = ("sftplan calibration: finished runs of the same configuration class; one shape: the median "
                      "measured/planned ratio, two or more: the step's fixed overhead and compute fitted apart")


def rule_calibration(used) -> Finding:
    """What a calibration did to the plan; a warning when its runs used other torch/transformers/deepspeed versions."""
    what = "; ".join(used.applied) or "no factor matched the chosen configurations: raw estimates"
    if used.foreign_versions:
        return _f("estimate.calibration", "warning",
                  f"calibration {used.path} comes from runs on other software versions ({'; '.join(used.foreign_versions)}): "
                  f"its factors may not hold here. {what}", CALIBRATION_SOURCE)
    return _f("estimate.calibration", "applied", what, CALIBRATION_SOURCE)
