"""The one schema: pydantic v2 models shared by the CLI, request YAML, plan files, the TUI and the executor.

Flat models, ``extra="forbid"``, units in every quantity's name. Judgement ("won't fit", "prefer
LoRA") is a rule's Finding, never a validator here; validators only reject impossible input.
The estimator's five types (ModelSpec, GpuSpec, TrainConfig, MemoryBreakdown, Estimate) are plain
dataclasses in specs.py, re-exported here; no model below has a field of those types.
"""

from __future__ import annotations

from typing import Literal

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# The estimator's types are plain dataclasses (no pydantic on `sftplan estimate`'s path); re-exported here.
from advisor.specs import (  # noqa: F401
    PRECISIONS,
    STRATEGIES,
    Estimate,
    GpuSpec,
    MemoryBreakdown,
    ModelSpec,
    Precision,
    SpecError,
    Strategy,
    TrainConfig,
)

SCHEMA_VERSION = 2  # 2: tier rows carry breakdown/capacity/binding constraint; the approval stamp is hashed

Goal = Literal["lora-below-bar", "new-tokenizer", "deep-retask", "hard-reasoning", "fast-iteration", "lora-cleared-bar"]
GOALS: tuple[str, ...] = Goal.__args__  # type: ignore[attr-defined]
Method = Literal["full-sft", "lora"]


class _Model(BaseModel):
    # schemas built on first use; inf/nan are never a valid quantity
    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True, allow_inf_nan=False)


def _not_bool(value):
    """YAML's `true` is not a count: pydantic would read it as 1."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]

# Sane ranges a request is held to (one line naming the field beyond them).
MAX_EXAMPLES = 10**10
MAX_TOKENS = 10**7
MAX_GPUS = 100_000
MAX_EPOCHS = 100
MAX_BUDGET_USD = 1e9
MAX_DEADLINE_HOURS = 1e5


# --------------------------------------------------------------------------- request


class DataFile(_Model):
    """A data file the approver approves: path and content hash."""

    path: str = Field(description="the file as given (relative to where sftplan ran)")
    sha256: str = Field(description="sha256 of the file's bytes")
    rows: Int = Field(ge=0, description="JSONL rows, every one checked")


OverMaxSeqLen = Literal["truncate-response", "refuse"]
OVER_MAX_SEQ_LEN_RULE = {
    "truncate-response": "a row longer than max_seq_len is cut at max_seq_len (its response loses its end) while at "
                         "least one answer token remains; a row whose prompt alone fills max_seq_len is refused "
                         "(the run does not start; each is named by file:line)",
    "refuse": "a row longer than max_seq_len is refused (the run does not start; each is named by file:line)",
}


class LongRows(_Model):
    """Rows over max_seq_len as counted when the plan measured the data (`sftplan run` counts exactly, with the
    chat template, and applies the same rule, DatasetSpec.over_max_seq_len)."""

    max_seq_len: Int = Field(gt=0, description="the limit the rows were counted against")
    truncated: Int = Field(default=0, ge=0, description="rows the rule truncates")
    refused: Int = Field(default=0, ge=0, description="rows the rule refuses")
    first: list[str] = Field(default_factory=list, description="file:line of the first few such rows")
    counted_by: str = Field(default="", description="how the tokens were counted")


class DatasetSpec(_Model):
    """The training data: its size, and when a file was measured, its hash and token lengths."""

    examples: Int = Field(gt=0, le=MAX_EXAMPLES, description="number of training examples")
    avg_tokens: Int = Field(default=512, gt=0, le=MAX_TOKENS, description="mean tokens per example (prompt + response)")
    file: DataFile | None = Field(default=None, description="the measured JSONL file, when one was given")
    token_p50: Int | None = Field(default=None, description="median tokens per example (measured files)")
    token_p95: Int | None = Field(default=None, description="95th-percentile tokens per example (measured files)")
    token_max: Int | None = Field(default=None, description="longest example in tokens (measured files)")
    token_count_method: str = Field(default="given", description="'given', the tokenizer used, or the approximation")
    over_max_seq_len: OverMaxSeqLen = Field(default="truncate-response",
                                            description="what happens to a row longer than max_seq_len")
    long_rows: LongRows | None = Field(default=None, description="rows over max_seq_len, when a file was measured")


PiiDecision = Literal["redact", "accept"]


class DataCheck(_Model):
    """What the data check (advisor/datacheck.py, `sftplan data check`) found in the training data when the
    plan was made: counts and the first file:line of each kind. Hashed with the plan."""

    skipped: bool = Field(default=False, description="the check was skipped (--no-data-check): nothing below was looked at")
    rows: Int = Field(default=0, ge=0, description="rows checked")
    exact_duplicate_rows: int = Field(default=0, ge=0, description="rows beyond the first of each exact-duplicate group")
    near_duplicate_rows: int = Field(default=0, ge=0, description="rows beyond the first of each near-duplicate group")
    duplicate_first: list[str] = Field(default_factory=list, description="file:line of the first few duplicate rows")
    pii_hits: Int = Field(default=0, ge=0, description="rows with personal data found")
    pii_kinds: list[str] = Field(default_factory=list, description="kinds of personal data found (phone, email, ...)")
    pii_first: list[str] = Field(default_factory=list, description="file:line (kind in field) of the first few")
    pii_decision: PiiDecision | None = Field(default=None, description="--pii: redact (plan on a redacted copy) or accept")
    redacted_from: DataFile | None = Field(default=None, description="the original file when --pii redact wrote the copy planned on")
    leakage: int = Field(default=0, ge=0, description="golden rows whose prompt (+ answer) is in the training data")
    leakage_first: list[str] = Field(default_factory=list, description="file:line of the first few leaked golden rows")
    too_long: Int = Field(default=0, ge=0, description="rows longer than max_seq_len")
    empty_answers: Int = Field(default=0, ge=0, description="rows whose answer is empty")
    settings: str = Field(default="", description="threshold, shingle size, token counting")
    notes: list[str] = Field(default_factory=list, description="what the check could not do, and why")


class OwnedHardware(_Model):
    """GPUs the team already has (already paid for: used first)."""

    gpu: str = Field(description="GPU tier id from the catalog")
    count: Int = Field(gt=0, le=MAX_GPUS, description="how many")


class DeployTask(_Model):
    """A deploy check the request adds: a local lm-eval task (name in a task YAML under include_path)."""

    name: str = Field(min_length=1, description="the check's name in the plan and PROMOTED.md")
    task: str = Field(min_length=1, description="lm-eval task name")
    metric: str = Field(min_length=1, description="lm-eval metric key, e.g. 'acc,none'")
    max_regression: Float = Field(ge=0, le=100, description="allowed drop vs the base model, in points")
    higher_is_better: bool = Field(default=True, description="the metric improves upward")
    required: bool = Field(default=True, description="a failure blocks promotion")


class ModelFiles(_Model):
    """The base model the approval covers (advisor/modelfiles.py computes it where the request is built)."""

    source: Literal["local", "hub"] = Field(description="local: a directory hashed file by file; hub: a hub id, "
                                                        "not verifiable without a download")
    sha256: dict[str, str] = Field(default_factory=dict, description="local: file name -> sha256 of config, "
                                   "tokenizer files, chat template, weights index and every weight shard")
    revision: str | None = Field(default=None, description="hub: the revision of model_path ('id@rev'); None = "
                                 "unpinned")


class PlanRequest(_Model):
    """Everything a planning session asks. CLI flags, request YAML and the TUI all build this."""

    model: str = Field(description="preset id, a bare size ('8B'), a config.json or a model directory")
    model_path: str | None = Field(default=None, description="weights for the executor: local HF dir or hub id")
    dataset: DatasetSpec = Field(description="the training data")
    golden: DataFile | None = Field(default=None, description="golden eval set (prompt+expected or messages)")
    data_check: DataCheck | None = Field(default=None, description="the data check's summary (plan --dataset runs it)")
    max_seq_len: Int = Field(default=2048, gt=0, le=MAX_TOKENS, description="longest training sequence in tokens")
    epochs: Int | None = Field(default=None, gt=0, le=MAX_EPOCHS, description="None = chosen by the rules")
    base: Literal["base", "instruct"] = Field(default="base", description="a base model or an instruct-tuned one")
    goals: list[Goal] = Field(default_factory=list, description="why fine-tune: the goals the method rules weigh")
    budget_usd: Float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD, description="the most the run may cost")
    deadline_hours: Float | None = Field(default=None, gt=0, le=MAX_DEADLINE_HOURS,
                                         description="the longest the run may take, wall clock")
    have: list[OwnedHardware] = Field(default_factory=list, description="GPUs already owned")
    nvidia_stack: bool = Field(default=False, description="the team already runs NVIDIA's stack (Megatron at frontier scale)")
    max_gpus: Int = Field(default=128, gt=0, le=MAX_GPUS, description="the most GPUs the search may use")
    network_gbit_per_s_per_node: Float | None = Field(
        default=None, gt=0, le=1e6, description="the cluster's network per node (all NICs, Gbit/s); default: the catalog tier's")
    method: Literal["auto", "full-sft", "lora"] = Field(default="auto", description="auto = chosen by the rules")
    precision: Precision = Field(default="bf16-mixed", description="bf16-mixed (fp32 master weights) or bf16-pure")
    gpu: str | None = Field(default=None, description="pin the search to one GPU tier")
    num_gpus: Int | None = Field(default=None, gt=0, le=MAX_GPUS, description="pin the GPU count")
    strategy: Strategy | None = Field(default=None, description="pin the strategy")
    learning_rate: Float | None = Field(default=None, gt=0, le=1, description="override the rules' learning rate")
    packing: bool = Field(default=False, description="pack examples into full sequences")
    memory_headroom: Float = Field(default=0.10, ge=0, le=0.5, description="fraction of GPU memory kept free: a configuration is recommended only when its estimate leaves it")
    memory_check_steps: Int = Field(default=3, ge=1, description="optimizer steps after which a run compares its measured peak memory with the estimate")
    gate_tolerance: Float = Field(default=0.02, ge=0, le=1, description="allowed relative golden-loss rise / score drop")
    min_golden_score: Float | None = Field(default=None, ge=0, le=1, description="the least golden score an epoch must reach")
    deploy_tasks: list[DeployTask] = Field(default_factory=list, description="local lm-eval tasks added to the deploy suite")
    deploy_include_path: str | None = Field(default=None, description="folder of lm-eval task YAMLs for deploy_tasks")
    deploy_limit: Int | None = Field(default=None, gt=0, description="examples per deploy task (a quick look)")
    model_files: ModelFiles | None = Field(default=None, description="the base model's files by sha256 (a local "
                                           "model_path) or its hub revision; the executor verifies them")


# --------------------------------------------------------------------------- plan


class Finding(_Model):
    """One rule's judgement, with its reason and its source."""

    rule_id: str = Field(description="the rule that made it, e.g. method.data-volume")
    verdict: str = Field(description="what the rule concluded")
    why: str = Field(description="the reason, with the numbers that triggered it")
    source: str = Field(description="the guide's sentence (docs/SOURCES.md), or the formula's paper")
    overridden: bool = Field(default=False, description="the request overrode this rule's verdict")


class Recommended(_Model):
    """A training configuration on one GPU tier."""

    gpu: str = Field(description="GPU tier id")
    num_gpus: Int = Field(gt=0, description="GPUs in all")
    num_nodes: Int = Field(gt=0, description="nodes they span")
    strategy: Strategy = Field(description="parallelism strategy")
    micro_batch_size: Int = Field(gt=0, description="sequences per GPU per forward pass")
    grad_accum: Int = Field(gt=0, description="micro-batches per optimizer step")
    activation_checkpointing: bool = Field(description="recompute activations in the backward pass")
    tp: Int = Field(default=1, description="tensor-parallel size (megatron)")
    pp: Int = Field(default=1, description="pipeline-parallel size (megatron)")
    precision: Precision = Field(default="bf16-mixed", description="training precision")


class PlanEstimate(_Model):
    """The estimator's figures for the recommended configuration."""

    memory_per_gpu_gib: Float = Field(description="peak memory per GPU")
    memory_breakdown_gib: dict[str, Float] = Field(description="memory per GPU by component")
    cpu_memory_per_node_gib: Float = Field(description="host RAM per node (offload)")
    hours: Float = Field(description="wall-clock hours, overhead included")
    cost_usd: Float = Field(description="on-demand dollars for those hours")
    overhead_hours: Float = Field(default=0.0, description="part of hours: start-up, weight load, checkpoint writes")
    tokens_total: Int = Field(description="tokens trained, all epochs")
    tokens_per_s_per_gpu: Float = Field(description="estimated throughput per GPU")
    step_time_s: Float = Field(description="seconds per optimizer step")
    mfu: Float = Field(description="model FLOPs utilisation")
    steps_per_epoch: Int = Field(description="optimizer steps per epoch")
    total_steps: Int = Field(description="optimizer steps in all")
    hbm_gib: Float = Field(default=0.0, description="GPU memory of the tier")
    memory_spare_gib: Float = Field(default=0.0, description="hbm_gib minus memory_per_gpu_gib")


class TierRow(_Model):
    """One GPU tier's best configuration (or why none fits): everything the faces show for the row."""

    gpu: str = Field(description="GPU tier id")
    fits: bool = Field(description="some configuration fits on this tier")
    config: Recommended | None = Field(default=None, description="the tier's best configuration")
    memory_per_gpu_gib: Float | None = Field(default=None, description="its memory per GPU")
    hours: Float | None = Field(default=None, description="its wall-clock hours")
    cost_usd: Float | None = Field(default=None, description="its on-demand dollars")
    usd_per_gpu_hour: Float = Field(description="the tier's catalog price")
    meets_constraints: bool = Field(default=False, description="within the budget and deadline")
    why_not: str | None = Field(default=None, description="why nothing fits, with the numbers")
    memory_breakdown_gib: dict[str, Float] | None = Field(
        default=None, description="memory per GPU by component for the row's config (the failed attempt when it does not fit)")
    hbm_gib: Float | None = Field(default=None, description="the GPU's memory")
    binding_constraint: str | None = Field(
        default=None, description="short reason the row does not fit or misses the constraints, e.g. 'GPU memory 95.1/79.6 GiB'")


class Closest(_Model):
    """When nothing meets budget/deadline: the nearest option and by how much it misses."""

    config: Recommended = Field(description="the nearest configuration")
    hours: Float = Field(description="its wall-clock hours")
    cost_usd: Float = Field(description="its on-demand dollars")
    shortfall_usd: Float = Field(default=0.0, description="dollars over the budget")
    shortfall_hours: Float = Field(default=0.0, description="hours past the deadline")
    why: str = Field(description="the miss in words")


class Hyperparameters(_Model):
    """What the trainer is given, each value with the rule that chose it."""

    learning_rate: Float = Field(gt=0, description="peak learning rate")
    lr_scheduler: Literal["cosine"] = Field(default="cosine", description="learning-rate schedule")
    warmup_ratio: Float = Field(ge=0, lt=1, description="fraction of steps warming up")
    weight_decay: Float = Field(ge=0, description="AdamW weight decay")
    epochs: Int = Field(gt=0, description="passes over the data")
    max_seq_len: Int = Field(gt=0, description="longest training sequence in tokens")
    global_batch_size: Int = Field(gt=0, description="sequences per optimizer step")
    global_batch_tokens: Int = Field(gt=0, description="about how many tokens per optimizer step")
    chosen_by: dict[str, str] = Field(default_factory=dict, description="field -> rule id")


class Checkpointing(_Model):
    """When checkpoints are written and how much disk they take."""

    every: Literal["epoch"] = Field(default="epoch", description="one checkpoint per epoch")
    keep_last: Int = Field(default=3, ge=3, description="checkpoints kept")
    disk_gib_per_checkpoint: Float = Field(description="one checkpoint: weights + optimizer states")
    disk_gib: Float = Field(description="keep_last checkpoints together")


class DeployCheck(_Model):
    """One benchmark of the deploy gate."""

    name: str = Field(description="benchmark name")
    max_regression: Float = Field(description="allowed absolute drop vs the base model, in points")
    required: bool = Field(default=True, description="a failure blocks promotion")
    task: str | None = Field(default=None, description="lm-evaluation-harness task that runs this check; None: none can")
    metric: str | None = Field(default=None, description="the lm-eval metric key compared, e.g. 'acc,none'")
    higher_is_better: bool = Field(default=True, description="False for metrics where a rise is the regression")


class DeploySettings(_Model):
    """How the deploy suite is run by `sftplan evaluate` (same settings for the base and the tuned model)."""

    batch_size: Int = Field(default=8, gt=0, le=4096, description="lm-eval batch size")
    limit: Int | None = Field(default=None, gt=0, description="examples per task; None = the whole task")
    limited_can_clear: bool = Field(default=False, description="may a --limit run clear a required check")
    seed: Int = Field(default=1234, ge=0, description="lm-eval random / numpy / torch / few-shot seed")
    include_path: str | None = Field(default=None, description="folder of extra lm-eval task YAMLs")


class Evaluation(_Model):
    """The golden eval after each epoch and the deploy gate."""

    golden: DataFile | None = Field(default=None, description="the golden set")
    after_every: Literal["epoch"] = Field(default="epoch", description="when it is scored")
    tolerance: Float = Field(ge=0, description="allowed relative golden-loss rise / score drop")
    min_golden_score: Float | None = Field(default=None, description="the least golden score an epoch must reach")
    max_new_tokens: Int = Field(default=32, gt=0, description="tokens generated per golden prompt")
    deploy_suite: list[DeployCheck] = Field(default_factory=list, description="benchmarks gating deployment")
    deploy: DeploySettings | None = Field(default=None, description="how `sftplan evaluate` runs the suite")
    deploy_hours: Float | None = Field(default=None, description="estimated hours of the suite (base + tuned, forward only)")
    deploy_cost_usd: Float | None = Field(default=None, description="that time on the plan's GPUs, on-demand")


class LoraAlternative(_Model):
    """LoRA's cheapest configuration, for comparison (or the plan when the method is lora)."""

    rank: Int = Field(default=16, description="LoRA rank")
    dora: bool = Field(default=True, description="weight-decomposed LoRA (DoRA)")
    gpu: str | None = Field(default=None, description="GPU tier id")
    num_gpus: Int | None = Field(default=None, description="GPUs in all")
    strategy: Strategy | None = Field(default=None, description="parallelism strategy")
    memory_per_gpu_gib: Float | None = Field(default=None, description="peak memory per GPU")
    hours: Float | None = Field(default=None, description="wall-clock hours")
    cost_usd: Float | None = Field(default=None, description="on-demand dollars")
    full_sft_cost_ratio: Float | None = Field(default=None, description="full SFT cost / LoRA cost")
    note: str = Field(default="", description="what the estimate assumes")


class LoraSettings(_Model):
    """The adapter a LoRA plan trains (peft LoraConfig): each value's rule is in chosen_by."""

    rank: Int = Field(default=16, gt=0, description="LoRA rank r")
    alpha: Int = Field(default=32, gt=0, description="LoRA alpha (the adapter's output is scaled by alpha / r)")
    dropout: Float = Field(default=0.05, ge=0, lt=1, description="dropout on the adapter's input")
    dora: bool = Field(default=True, description="weight-decomposed LoRA (DoRA)")
    target_modules: list[str] = Field(default_factory=list, description="module names; empty = all linear layers")
    trainable_params: Int | None = Field(default=None, ge=0, description="adapter parameters")
    chosen_by: dict[str, str] = Field(default_factory=dict, description="field -> rule id")


class FullSftAlternative(_Model):
    """Full SFT priced beside a LoRA plan (the mirror of lora_alternative)."""

    gpu: str | None = Field(default=None, description="GPU tier id")
    num_gpus: Int | None = Field(default=None, description="GPUs in all")
    strategy: Strategy | None = Field(default=None, description="parallelism strategy")
    memory_per_gpu_gib: Float | None = Field(default=None, description="peak memory per GPU")
    hours: Float | None = Field(default=None, description="wall-clock hours")
    cost_usd: Float | None = Field(default=None, description="on-demand dollars")
    learning_rate: Float | None = Field(default=None, description="the full-SFT learning rate")
    cost_ratio: Float | None = Field(default=None, description="full SFT cost / LoRA cost")
    note: str = Field(default="", description="what the estimate assumes")


class ModelSummary(_Model):
    """The model as resolved."""

    name: str = Field(description="preset id, size label or config.json path")
    family: str = Field(description="architecture family (llama, qwen2, ...)")
    source: Literal["preset", "config.json", "generic-size"] = Field(description="where the architecture came from")
    params: Int = Field(description="every parameter")
    active_params: Int = Field(description="parameters that touch one token (MoE)")
    note: str = Field(default="", description="caveat, e.g. a generic architecture")


class Approval(_Model):
    """Who approved the plan, when, and the hashes that make both tamper-evident."""

    by: str = Field(min_length=1, description="the approver's name")
    at: str = Field(description="ISO-8601 UTC")
    plan_sha256: str = Field(description="the content hash that was approved")
    stamp_sha256: str | None = Field(
        default=None, description="sha256 of plan_sha256, by and at together: rewriting the name or time breaks it "
                                  "(absent in schema-1 files)")


class CalibrationUsed(_Model):
    """The calibration file a plan was made with (`sftplan calibrate`) and what it changed."""

    path: str = Field(description="the calibration file as given")
    sha256: str = Field(description="its content hash (part of the approved content)")
    applied: list[str] = Field(default_factory=list, description="the factors used, with their class and runs")
    foreign_versions: list[str] = Field(default_factory=list,
                                        description="software versions of its runs that differ from this install")


class Plan(_Model):
    """plan.yaml: the request, the decision, the configuration and everything the run needs."""

    schema_version: Literal[1, 2] = Field(default=SCHEMA_VERSION, description="2 now; 1 files are read and verified")
    request: PlanRequest = Field(description="what was asked")
    model: ModelSummary = Field(description="the model as resolved")
    method: Method = Field(description="full-sft or lora")
    findings: list[Finding] = Field(description="every rule's judgement")
    recommended: Recommended | None = Field(default=None, description="the configuration `sftplan run` executes (LoRA's when the method is lora)")
    estimate: PlanEstimate | None = Field(default=None, description="the estimator's figures for it")
    closest: Closest | None = Field(default=None, description="when nothing meets the constraints: the nearest miss")
    tiers: list[TierRow] = Field(description="every GPU tier's best configuration or why none fits")
    hyperparameters: Hyperparameters = Field(description="what the trainer is given")
    checkpointing: Checkpointing = Field(description="checkpoint schedule and disk")
    evaluation: Evaluation = Field(description="the golden eval and the deploy gate")
    lora_alternative: LoraAlternative = Field(description="LoRA's cheapest configuration")
    lora: LoraSettings | None = Field(default=None, description="the adapter a LoRA plan trains (peft LoraConfig)")
    full_sft_alternative: FullSftAlternative | None = Field(
        default=None, description="full SFT priced beside a LoRA plan (the mirror of lora_alternative)")
    warnings: list[str] = Field(default_factory=list, description="what a reviewer should read twice")
    catalog_sha256: str = Field(default="", description="sha256 of the hardware catalog used")
    calibration: CalibrationUsed | None = Field(default=None, description="correction factors from finished runs, if given")
    plan_sha256: str = Field(default="", description="sha256 of the content (everything but itself and approval)")
    approval: Approval | None = Field(default=None, description="the approval stamp, once approved")
