"""The one schema: pydantic v2 models shared by the CLI, request YAML, plan files, the TUI and the executor.

Flat models, ``extra="forbid"``, units in every quantity's name. Judgement ("won't fit", "prefer
LoRA") is a rule's Finding, never a validator here; validators only reject impossible input.
The estimator's five types (ModelSpec, GpuSpec, TrainConfig, MemoryBreakdown, Estimate) are plain
dataclasses in specs.py, re-exported here; no model below has a field of those types.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)  # schemas built on first use


# --------------------------------------------------------------------------- request


class DataFile(_Model):
    """A data file the approver approves: path and content hash."""

    path: str
    sha256: str
    rows: int = Field(ge=0)


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

    max_seq_len: int = Field(gt=0, description="the limit the rows were counted against")
    truncated: int = Field(default=0, ge=0, description="rows the rule truncates")
    refused: int = Field(default=0, ge=0, description="rows the rule refuses")
    first: list[str] = Field(default_factory=list, description="file:line of the first few such rows")
    counted_by: str = ""


class DatasetSpec(_Model):
    examples: int = Field(gt=0)
    avg_tokens: int = Field(gt=0, description="mean tokens per example (prompt + response)")
    file: DataFile | None = None
    token_p50: int | None = None
    token_p95: int | None = None
    token_max: int | None = None
    token_count_method: str = "given"
    over_max_seq_len: OverMaxSeqLen = Field(default="truncate-response",
                                            description="what happens to a row longer than max_seq_len")
    long_rows: LongRows | None = None


class OwnedHardware(_Model):
    gpu: str
    count: int = Field(gt=0)


class DeployTask(_Model):
    """A deploy check the request adds: a local lm-eval task (name in a task YAML under include_path)."""

    name: str = Field(min_length=1, description="the check's name in the plan and PROMOTED.md")
    task: str = Field(min_length=1, description="lm-eval task name")
    metric: str = Field(min_length=1, description="lm-eval metric key, e.g. 'acc,none'")
    max_regression: float = Field(ge=0, le=100, description="allowed drop vs the base model, in points")
    higher_is_better: bool = True
    required: bool = True


class PlanRequest(_Model):
    """Everything a planning session asks. CLI flags, request YAML and the TUI all build this."""

    model: str = Field(description="preset id, a bare size ('8B'), a config.json or a model directory")
    model_path: str | None = Field(default=None, description="weights for the executor: local HF dir or hub id")
    dataset: DatasetSpec
    golden: DataFile | None = Field(default=None, description="golden eval set (prompt+expected or messages)")
    max_seq_len: int = Field(default=2048, gt=0)
    epochs: int | None = Field(default=None, gt=0, description="None = chosen by the rules")
    base: Literal["base", "instruct"] = "base"
    goals: list[Goal] = Field(default_factory=list)
    budget_usd: float | None = Field(default=None, gt=0)
    deadline_hours: float | None = Field(default=None, gt=0)
    have: list[OwnedHardware] = Field(default_factory=list)
    nvidia_stack: bool = False
    max_gpus: int = Field(default=128, gt=0)
    method: Literal["auto", "full-sft", "lora"] = "auto"
    precision: Precision = "bf16-mixed"
    gpu: str | None = Field(default=None, description="pin the search to one GPU tier")
    num_gpus: int | None = Field(default=None, gt=0, description="pin the GPU count")
    strategy: Strategy | None = Field(default=None, description="pin the strategy")
    learning_rate: float | None = Field(default=None, gt=0, description="override the rules' learning rate")
    packing: bool = False
    memory_headroom: float = Field(default=0.10, ge=0, le=0.5, description="fraction of GPU memory kept free: a configuration is recommended only when its estimate leaves it")
    gate_tolerance: float = Field(default=0.02, ge=0, description="allowed relative golden-loss rise / score drop")
    min_golden_score: float | None = Field(default=None, ge=0, le=1)
    deploy_tasks: list[DeployTask] = Field(default_factory=list, description="local lm-eval tasks added to the deploy suite")
    deploy_include_path: str | None = Field(default=None, description="folder of lm-eval task YAMLs for deploy_tasks")
    deploy_limit: int | None = Field(default=None, gt=0, description="examples per deploy task (a quick look)")


# --------------------------------------------------------------------------- plan


class Finding(_Model):
    rule_id: str
    verdict: str
    why: str = Field(description="the reason, with the numbers that triggered it")
    source: str = Field(description="the guide's sentence (../shared/SOURCES.md), or the formula's paper")
    overridden: bool = False


class Recommended(_Model):
    gpu: str
    num_gpus: int = Field(gt=0)
    num_nodes: int = Field(gt=0)
    strategy: Strategy
    micro_batch_size: int = Field(gt=0)
    grad_accum: int = Field(gt=0)
    activation_checkpointing: bool
    tp: int = 1
    pp: int = 1
    precision: Precision = "bf16-mixed"


class PlanEstimate(_Model):
    memory_per_gpu_gib: float
    memory_breakdown_gib: dict[str, float]
    cpu_memory_per_node_gib: float
    hours: float
    cost_usd: float
    overhead_hours: float = Field(default=0.0, description="part of hours: start-up, weight load, checkpoint writes")
    tokens_total: int
    tokens_per_s_per_gpu: float
    step_time_s: float
    mfu: float
    steps_per_epoch: int
    total_steps: int
    hbm_gib: float = Field(default=0.0, description="GPU memory of the tier")
    memory_spare_gib: float = Field(default=0.0, description="hbm_gib minus memory_per_gpu_gib")


class TierRow(_Model):
    """One GPU tier's best configuration (or why none fits): everything the faces show for the row."""

    gpu: str
    fits: bool
    config: Recommended | None = None
    memory_per_gpu_gib: float | None = None
    hours: float | None = None
    cost_usd: float | None = None
    usd_per_gpu_hour: float
    meets_constraints: bool = False
    why_not: str | None = None
    memory_breakdown_gib: dict[str, float] | None = Field(
        default=None, description="memory per GPU by component for the row's config (the failed attempt when it does not fit)")
    hbm_gib: float | None = Field(default=None, description="the GPU's usable memory")
    binding_constraint: str | None = Field(
        default=None, description="short reason the row does not fit or misses the constraints, e.g. 'GPU memory 95.1/79.6 GiB'")


class Closest(_Model):
    """When nothing meets budget/deadline: the nearest option and by how much it misses."""

    config: Recommended
    hours: float
    cost_usd: float
    shortfall_usd: float = 0.0
    shortfall_hours: float = 0.0
    why: str


class Hyperparameters(_Model):
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["cosine"] = "cosine"
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(gt=0)
    max_seq_len: int = Field(gt=0)
    global_batch_size: int = Field(gt=0, description="sequences per optimizer step")
    global_batch_tokens: int = Field(gt=0)
    chosen_by: dict[str, str] = Field(default_factory=dict, description="field -> rule id")


class Checkpointing(_Model):
    every: Literal["epoch"] = "epoch"
    keep_last: int = Field(default=3, ge=3)
    disk_gib_per_checkpoint: float
    disk_gib: float = Field(description="keep_last checkpoints together")


class DeployCheck(_Model):
    name: str
    max_regression: float = Field(description="allowed absolute drop vs the base model, in points")
    required: bool = True
    task: str | None = Field(default=None, description="lm-evaluation-harness task that runs this check; None: none can")
    metric: str | None = Field(default=None, description="the lm-eval metric key compared, e.g. 'acc,none'")
    higher_is_better: bool = Field(default=True, description="False for metrics where a rise is the regression")


class DeploySettings(_Model):
    """How the deploy suite is run by `sftplan evaluate` (same settings for the base and the tuned model)."""

    batch_size: int = Field(default=8, gt=0, le=4096, description="lm-eval batch size")
    limit: int | None = Field(default=None, gt=0, description="examples per task; None = the whole task")
    limited_can_clear: bool = Field(default=False, description="may a --limit run clear a required check")
    seed: int = Field(default=1234, ge=0, description="lm-eval random / numpy / torch / few-shot seed")
    include_path: str | None = Field(default=None, description="folder of extra lm-eval task YAMLs")


class Evaluation(_Model):
    golden: DataFile | None = None
    after_every: Literal["epoch"] = "epoch"
    tolerance: float = Field(ge=0)
    min_golden_score: float | None = None
    max_new_tokens: int = Field(default=32, gt=0)
    deploy_suite: list[DeployCheck] = Field(default_factory=list)
    deploy: DeploySettings | None = Field(default=None, description="how `sftplan evaluate` runs the suite")
    deploy_hours: float | None = Field(default=None, description="estimated hours of the suite (base + tuned, forward only)")
    deploy_cost_usd: float | None = Field(default=None, description="that time on the plan's GPUs, on-demand")


class LoraAlternative(_Model):
    rank: int = 16
    dora: bool = True
    gpu: str | None = None
    num_gpus: int | None = None
    strategy: Strategy | None = None
    memory_per_gpu_gib: float | None = None
    hours: float | None = None
    cost_usd: float | None = None
    full_sft_cost_ratio: float | None = Field(default=None, description="full SFT cost / LoRA cost")
    note: str = ""


class ModelSummary(_Model):
    name: str
    family: str
    source: Literal["preset", "config.json", "generic-size"]
    params: int
    active_params: int
    note: str = ""


class Approval(_Model):
    by: str = Field(min_length=1)
    at: str = Field(description="ISO-8601 UTC")
    plan_sha256: str
    stamp_sha256: str | None = Field(
        default=None, description="sha256 of plan_sha256, by and at together: rewriting the name or time breaks it "
                                  "(absent in schema-1 files)")


class Plan(_Model):
    schema_version: Literal[1, 2] = SCHEMA_VERSION
    request: PlanRequest
    model: ModelSummary
    method: Method
    findings: list[Finding]
    recommended: Recommended | None = None
    estimate: PlanEstimate | None = None
    closest: Closest | None = None
    tiers: list[TierRow]
    hyperparameters: Hyperparameters
    checkpointing: Checkpointing
    evaluation: Evaluation
    lora_alternative: LoraAlternative
    warnings: list[str] = Field(default_factory=list)
    catalog_sha256: str = ""
    plan_sha256: str = ""
    approval: Approval | None = None
