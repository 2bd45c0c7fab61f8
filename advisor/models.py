"""The one schema: the request and plan models shared by the CLI, request YAML, plan files, the TUI and the executor.

Plain dataclasses, the same system as the estimator's five types in specs.py (re-exported here): each
class has a ``validate()`` written out by hand with specs.py's checkers, run on construction; a broken
rule raises ``SpecError`` (a UserError) on its field path (``have[0].gpu``). ``from_dict`` builds from a
mapping and refuses unknown and missing keys; a nested mapping becomes its model; ``to_dict`` is the
plain data plan.yaml and the hash are made from; ``replace`` is a validated copy. An int is an int and
not a bool; a float also takes an int and stores a float, never inf or nan; a choice is one of its
values; ranges as stated. Each field's one-line description is its ``metadata["description"]``
(advisor/schema_doc.py makes docs/CONTRACTS.md from them). ``fields_set``: the fields the caller gave
(the rest took their defaults).

Flat models, units in every quantity's name. Judgement ("won't fit", "prefer LoRA") is a rule's
Finding, never a check here; the checks only reject impossible input.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Literal

# The estimator's types, and the checkers every validate() below is written with.
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
    _bool,
    _check,
    _choice,
    _choice_list,
    _float,
    _float_dict,
    _int,
    _nested,
    _nested_list,
    _Spec,
    _str,
    _str_dict,
    _str_list,
)

SCHEMA_VERSION = 2  # 2: tier rows carry breakdown/capacity/binding constraint; the approval stamp is hashed

Goal = Literal["lora-below-bar", "new-tokenizer", "deep-retask", "hard-reasoning", "fast-iteration", "lora-cleared-bar"]
GOALS: tuple[str, ...] = typing.get_args(Goal)
Method = Literal["full-sft", "lora"]
METHODS: tuple[str, ...] = typing.get_args(Method)

# Sane ranges a request is held to (one line naming the field beyond them).
MAX_EXAMPLES = 10**10
MAX_TOKENS = 10**7
MAX_GPUS = 100_000
MAX_EPOCHS = 100
MAX_BUDGET_USD = 1e9
MAX_DEADLINE_HOURS = 1e5


def _schema_version(plan: Any) -> SpecError | None:
    v = plan.schema_version
    return None if type(v) is int and v in (1, 2) else SpecError("schema_version", f"must be 1 or 2, got {v!r}")


def _f(description: str, default: Any = MISSING, factory: Any = MISSING) -> Any:
    """A field with its one-line description (and its default or default factory)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"description": description})


class _Model(_Spec):
    """The request and plan models: a dataclass that also records which fields the caller gave."""

    fields_set: frozenset[str]  # not a field: set by the __init__ that _model wraps

    def replace(self, **changes: Any):
        """A validated copy with ``changes``; the fields given are the original's plus the changed ones."""
        new = dataclasses.replace(self, **changes)
        new.fields_set = self.fields_set | changes.keys()
        return new


def _model(cls):
    """``@dataclass(kw_only=True)``, with ``fields_set`` = the keywords the object was built with."""
    cls = dataclass(kw_only=True)(cls)
    init = cls.__init__

    def __init__(self, **given: Any) -> None:
        init(self, **given)
        self.fields_set = frozenset(given)

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__
    return cls


# --------------------------------------------------------------------------- request


@_model
class DataFile(_Model):
    """A data file the approver approves: path and content hash."""

    path: str = _f("the file as given (relative to where sftplan ran)")
    sha256: str = _f("sha256 of the file's bytes")
    rows: int = _f("JSONL rows, every one checked")

    def validate(self) -> None:
        _check(
            _str(self, "path"),
            _str(self, "sha256"),
            _int(self, "rows", ge=0),
        )


OverMaxSeqLen = Literal["truncate-response", "refuse"]
OVER_MAX_SEQ_LEN: tuple[str, ...] = typing.get_args(OverMaxSeqLen)
OVER_MAX_SEQ_LEN_RULE = {
    "truncate-response": "a row longer than max_seq_len is cut at max_seq_len (its response loses its end) while at "
                         "least one answer token remains; a row whose prompt alone fills max_seq_len is refused "
                         "(the run does not start; each is named by file:line)",
    "refuse": "a row longer than max_seq_len is refused (the run does not start; each is named by file:line)",
}


@_model
class LongRows(_Model):
    """Rows over max_seq_len as counted when the plan measured the data (`sftplan run` counts exactly, with the
    chat template, and applies the same rule, DatasetSpec.over_max_seq_len)."""

    max_seq_len: int = _f("the limit the rows were counted against")
    truncated: int = _f("rows the rule truncates", default=0)
    refused: int = _f("rows the rule refuses", default=0)
    first: list[str] = _f("file:line of the first few such rows", factory=list)
    counted_by: str = _f("how the tokens were counted", default="")

    def validate(self) -> None:
        _check(
            _int(self, "max_seq_len", gt=0),
            _int(self, "truncated", ge=0),
            _int(self, "refused", ge=0),
            _str_list(self, "first"),
            _str(self, "counted_by"),
        )


@_model
class DatasetSpec(_Model):
    """The training data: its size, and when a file was measured, its hash and token lengths."""

    examples: int = _f("number of training examples")
    avg_tokens: int = _f("mean tokens per example (prompt + response)", default=512)
    file: DataFile | None = _f("the measured JSONL file, when one was given", default=None)
    token_p50: int | None = _f("median tokens per example (measured files)", default=None)
    token_p95: int | None = _f("95th-percentile tokens per example (measured files)", default=None)
    token_max: int | None = _f("longest example in tokens (measured files)", default=None)
    token_count_method: str = _f("'given', the tokenizer used, or the approximation", default="given")
    over_max_seq_len: OverMaxSeqLen = _f("what happens to a row longer than max_seq_len", default="truncate-response")
    long_rows: LongRows | None = _f("rows over max_seq_len, when a file was measured", default=None)

    def validate(self) -> None:
        _check(
            _int(self, "examples", gt=0, le=MAX_EXAMPLES),
            _int(self, "avg_tokens", gt=0, le=MAX_TOKENS),
            _nested(self, "file", DataFile, optional=True),
            _int(self, "token_p50", optional=True),
            _int(self, "token_p95", optional=True),
            _int(self, "token_max", optional=True),
            _str(self, "token_count_method"),
            _choice(self, "over_max_seq_len", OVER_MAX_SEQ_LEN),
            _nested(self, "long_rows", LongRows, optional=True),
        )


PiiDecision = Literal["redact", "accept"]
PII_DECISIONS: tuple[str, ...] = typing.get_args(PiiDecision)


@_model
class DataCheck(_Model):
    """What the data check (advisor/datacheck.py, `sftplan data check`) found in the training data when the
    plan was made: counts and the first file:line of each kind. Hashed with the plan."""

    skipped: bool = _f("the check was skipped (--no-data-check): nothing below was looked at", default=False)
    rows: int = _f("rows checked", default=0)
    exact_duplicate_rows: int = _f("rows beyond the first of each exact-duplicate group", default=0)
    near_duplicate_rows: int = _f("rows beyond the first of each near-duplicate group", default=0)
    duplicate_first: list[str] = _f("file:line of the first few duplicate rows", factory=list)
    pii_hits: int = _f("rows with personal data found", default=0)
    pii_kinds: list[str] = _f("kinds of personal data found (phone, email, ...)", factory=list)
    pii_first: list[str] = _f("file:line (kind in field) of the first few", factory=list)
    pii_decision: PiiDecision | None = _f("--pii: redact (plan on a redacted copy) or accept", default=None)
    redacted_from: DataFile | None = _f("the original file when --pii redact wrote the copy planned on", default=None)
    leakage: int = _f("golden rows whose prompt (+ answer) is in the training data", default=0)
    leakage_first: list[str] = _f("file:line of the first few leaked golden rows", factory=list)
    too_long: int = _f("rows longer than max_seq_len", default=0)
    empty_answers: int = _f("rows whose answer is empty", default=0)
    settings: str = _f("threshold, shingle size, token counting", default="")
    notes: list[str] = _f("what the check could not do, and why", factory=list)

    def validate(self) -> None:
        _check(
            _bool(self, "skipped"),
            _int(self, "rows", ge=0),
            _int(self, "exact_duplicate_rows", ge=0),
            _int(self, "near_duplicate_rows", ge=0),
            _str_list(self, "duplicate_first"),
            _int(self, "pii_hits", ge=0),
            _str_list(self, "pii_kinds"),
            _str_list(self, "pii_first"),
            _choice(self, "pii_decision", PII_DECISIONS, optional=True),
            _nested(self, "redacted_from", DataFile, optional=True),
            _int(self, "leakage", ge=0),
            _str_list(self, "leakage_first"),
            _int(self, "too_long", ge=0),
            _int(self, "empty_answers", ge=0),
            _str(self, "settings"),
            _str_list(self, "notes"),
        )


@_model
class OwnedHardware(_Model):
    """GPUs the team already has (already paid for: used first)."""

    gpu: str = _f("GPU tier id from the catalog")
    count: int = _f("how many")

    def validate(self) -> None:
        _check(
            _str(self, "gpu"),
            _int(self, "count", gt=0, le=MAX_GPUS),
        )


@_model
class DeployTask(_Model):
    """A deploy check the request adds: a local lm-eval task (name in a task YAML under include_path)."""

    name: str = _f("the check's name in the plan and PROMOTED.md")
    task: str = _f("lm-eval task name")
    metric: str = _f("lm-eval metric key, e.g. 'acc,none'")
    max_regression: float = _f("allowed drop vs the base model, in points")
    higher_is_better: bool = _f("the metric improves upward", default=True)
    required: bool = _f("a failure blocks promotion", default=True)

    def validate(self) -> None:
        _check(
            _str(self, "name", min_length=1),
            _str(self, "task", min_length=1),
            _str(self, "metric", min_length=1),
            _float(self, "max_regression", ge=0, le=100),
            _bool(self, "higher_is_better"),
            _bool(self, "required"),
        )


@_model
class ModelFiles(_Model):
    """The base model the approval covers (advisor/modelfiles.py computes it where the request is built)."""

    source: Literal["local", "hub"] = _f("local: a directory hashed file by file; hub: a hub id, "
                                         "not verifiable without a download")
    sha256: dict[str, str] = _f("local: file name -> sha256 of config, tokenizer files, chat template, weights "
                                "index and every weight shard", factory=dict)
    revision: str | None = _f("hub: the revision of model_path ('id@rev'); None = unpinned", default=None)

    def validate(self) -> None:
        _check(
            _choice(self, "source", ("local", "hub")),
            _str_dict(self, "sha256"),
            _str(self, "revision", optional=True),
        )


@_model
class PlanRequest(_Model):
    """Everything a planning session asks. CLI flags, request YAML and the TUI all build this."""

    model: str = _f("preset id, a bare size ('8B'), a config.json or a model directory")
    model_path: str | None = _f("weights for the executor: local HF dir or hub id", default=None)
    dataset: DatasetSpec = _f("the training data")
    golden: DataFile | None = _f("golden eval set (prompt+expected or messages)", default=None)
    data_check: DataCheck | None = _f("the data check's summary (plan --dataset runs it)", default=None)
    max_seq_len: int = _f("longest training sequence in tokens", default=2048)
    epochs: int | None = _f("None = chosen by the rules", default=None)
    base: Literal["base", "instruct"] = _f("a base model or an instruct-tuned one", default="base")
    goals: list[Goal] = _f("why fine-tune: the goals the method rules weigh", factory=list)
    budget_usd: float | None = _f("the most the run may cost", default=None)
    deadline_hours: float | None = _f("the longest the run may take, wall clock", default=None)
    have: list[OwnedHardware] = _f("GPUs already owned", factory=list)
    nvidia_stack: bool = _f("the team already runs NVIDIA's stack (Megatron at frontier scale)", default=False)
    max_gpus: int = _f("the most GPUs the search may use", default=128)
    network_gbit_per_s_per_node: float | None = _f(
        "the cluster's network per node (all NICs, Gbit/s); default: the catalog tier's", default=None)
    method: Literal["auto", "full-sft", "lora"] = _f("auto = chosen by the rules", default="auto")
    precision: Precision = _f("bf16-mixed (fp32 master weights) or bf16-pure", default="bf16-mixed")
    gpu: str | None = _f("pin the search to one GPU tier", default=None)
    num_gpus: int | None = _f("pin the GPU count", default=None)
    strategy: Strategy | None = _f("pin the strategy", default=None)
    learning_rate: float | None = _f("override the rules' learning rate", default=None)
    packing: bool = _f("pack examples into full sequences", default=False)
    memory_headroom: float = _f(
        "fraction of GPU memory kept free: a configuration is recommended only when its estimate leaves it", default=0.10)
    memory_check_steps: int = _f(
        "optimizer steps after which a run compares its measured peak memory with the estimate", default=3)
    gate_tolerance: float = _f("allowed relative golden-loss rise / score drop", default=0.02)
    min_golden_score: float | None = _f("the least golden score an epoch must reach", default=None)
    deploy_tasks: list[DeployTask] = _f("local lm-eval tasks added to the deploy suite", factory=list)
    deploy_include_path: str | None = _f("folder of lm-eval task YAMLs for deploy_tasks", default=None)
    deploy_limit: int | None = _f("examples per deploy task (a quick look)", default=None)
    model_files: ModelFiles | None = _f("the base model's files by sha256 (a local model_path) or its hub revision; "
                                        "the executor verifies them", default=None)

    def validate(self) -> None:
        _check(
            _str(self, "model"),
            _str(self, "model_path", optional=True),
            _nested(self, "dataset", DatasetSpec),
            _nested(self, "golden", DataFile, optional=True),
            _nested(self, "data_check", DataCheck, optional=True),
            _int(self, "max_seq_len", gt=0, le=MAX_TOKENS),
            _int(self, "epochs", gt=0, le=MAX_EPOCHS, optional=True),
            _choice(self, "base", ("base", "instruct")),
            _choice_list(self, "goals", GOALS),
            _float(self, "budget_usd", gt=0, le=MAX_BUDGET_USD, optional=True),
            _float(self, "deadline_hours", gt=0, le=MAX_DEADLINE_HOURS, optional=True),
            _nested_list(self, "have", OwnedHardware),
            _bool(self, "nvidia_stack"),
            _int(self, "max_gpus", gt=0, le=MAX_GPUS),
            _float(self, "network_gbit_per_s_per_node", gt=0, le=1e6, optional=True),
            _choice(self, "method", ("auto", "full-sft", "lora")),
            _choice(self, "precision", PRECISIONS),
            _str(self, "gpu", optional=True),
            _int(self, "num_gpus", gt=0, le=MAX_GPUS, optional=True),
            _choice(self, "strategy", STRATEGIES, optional=True),
            _float(self, "learning_rate", gt=0, le=1, optional=True),
            _bool(self, "packing"),
            _float(self, "memory_headroom", ge=0, le=0.5),
            _int(self, "memory_check_steps", ge=1),
            _float(self, "gate_tolerance", ge=0, le=1),
            _float(self, "min_golden_score", ge=0, le=1, optional=True),
            _nested_list(self, "deploy_tasks", DeployTask),
            _str(self, "deploy_include_path", optional=True),
            _int(self, "deploy_limit", gt=0, optional=True),
            _nested(self, "model_files", ModelFiles, optional=True),
        )


# --------------------------------------------------------------------------- plan


@_model
class Finding(_Model):
    """One rule's judgement, with its reason and its source."""

    rule_id: str = _f("the rule that made it, e.g. method.data-volume")
    verdict: str = _f("what the rule concluded")
    why: str = _f("the reason, with the numbers that triggered it")
    source: str = _f("the guide's sentence (docs/SOURCES.md), or the formula's paper")
    overridden: bool = _f("the request overrode this rule's verdict", default=False)

    def validate(self) -> None:
        _check(
            _str(self, "rule_id"),
            _str(self, "verdict"),
            _str(self, "why"),
            _str(self, "source"),
            _bool(self, "overridden"),
        )


@_model
class Recommended(_Model):
    """A training configuration on one GPU tier."""

    gpu: str = _f("GPU tier id")
    num_gpus: int = _f("GPUs in all")
    num_nodes: int = _f("nodes they span")
    strategy: Strategy = _f("parallelism strategy")
    micro_batch_size: int = _f("sequences per GPU per forward pass")
    grad_accum: int = _f("micro-batches per optimizer step")
    activation_checkpointing: bool = _f("recompute activations in the backward pass")
    tp: int = _f("tensor-parallel size (megatron, fsdp-tp)", default=1)
    pp: int = _f("pipeline-parallel size (megatron)", default=1)
    precision: Precision = _f("training precision", default="bf16-mixed")

    def validate(self) -> None:
        _check(
            _str(self, "gpu"),
            _int(self, "num_gpus", gt=0),
            _int(self, "num_nodes", gt=0),
            _choice(self, "strategy", STRATEGIES),
            _int(self, "micro_batch_size", gt=0),
            _int(self, "grad_accum", gt=0),
            _bool(self, "activation_checkpointing"),
            _int(self, "tp"),
            _int(self, "pp"),
            _choice(self, "precision", PRECISIONS),
        )


@_model
class PlanEstimate(_Model):
    """The estimator's figures for the recommended configuration."""

    memory_per_gpu_gib: float = _f("peak memory per GPU")
    memory_breakdown_gib: dict[str, float] = _f("memory per GPU by component")
    cpu_memory_per_node_gib: float = _f("host RAM per node (offload)")
    hours: float = _f("wall-clock hours, overhead included")
    cost_usd: float = _f("on-demand dollars for those hours")
    overhead_hours: float = _f("part of hours: start-up, weight load, checkpoint writes", default=0.0)
    tokens_total: int = _f("tokens trained, all epochs")
    tokens_per_s_per_gpu: float = _f("estimated throughput per GPU")
    step_time_s: float = _f("seconds per optimizer step")
    mfu: float = _f("model FLOPs utilisation")
    steps_per_epoch: int = _f("optimizer steps per epoch")
    total_steps: int = _f("optimizer steps in all")
    hbm_gib: float = _f("GPU memory of the tier", default=0.0)
    memory_spare_gib: float = _f("hbm_gib minus memory_per_gpu_gib", default=0.0)
    step_overhead_s: float = _f("fixed part of the raw step time: per-step and per-micro-batch overhead", default=0.0)
    raw_step_time_s: float | None = _f("step time before calibration (None: not calibrated)", default=None)
    raw_tokens_per_s_per_gpu: float | None = _f("throughput before calibration (None: not calibrated)", default=None)

    def validate(self) -> None:
        _check(
            _float(self, "memory_per_gpu_gib"),
            _float_dict(self, "memory_breakdown_gib"),
            _float(self, "cpu_memory_per_node_gib"),
            _float(self, "hours"),
            _float(self, "cost_usd"),
            _float(self, "overhead_hours"),
            _int(self, "tokens_total"),
            _float(self, "tokens_per_s_per_gpu"),
            _float(self, "step_time_s"),
            _float(self, "mfu"),
            _int(self, "steps_per_epoch"),
            _int(self, "total_steps"),
            _float(self, "hbm_gib"),
            _float(self, "memory_spare_gib"),
            _float(self, "step_overhead_s", ge=0),
            _float(self, "raw_step_time_s", optional=True),
            _float(self, "raw_tokens_per_s_per_gpu", optional=True),
        )


@_model
class TierRow(_Model):
    """One GPU tier's best configuration (or why none fits): everything the faces show for the row."""

    gpu: str = _f("GPU tier id")
    fits: bool = _f("some configuration fits on this tier")
    config: Recommended | None = _f("the tier's best configuration", default=None)
    memory_per_gpu_gib: float | None = _f("its memory per GPU", default=None)
    hours: float | None = _f("its wall-clock hours", default=None)
    cost_usd: float | None = _f("its on-demand dollars", default=None)
    usd_per_gpu_hour: float = _f("the tier's catalog price")
    meets_constraints: bool = _f("within the budget and deadline", default=False)
    why_not: str | None = _f("why nothing fits, with the numbers", default=None)
    memory_breakdown_gib: dict[str, float] | None = _f(
        "memory per GPU by component for the row's config (the failed attempt when it does not fit)", default=None)
    hbm_gib: float | None = _f("the GPU's memory", default=None)
    binding_constraint: str | None = _f(
        "short reason the row does not fit or misses the constraints, e.g. 'GPU memory 95.1/79.6 GiB'", default=None)

    def validate(self) -> None:
        _check(
            _str(self, "gpu"),
            _bool(self, "fits"),
            _nested(self, "config", Recommended, optional=True),
            _float(self, "memory_per_gpu_gib", optional=True),
            _float(self, "hours", optional=True),
            _float(self, "cost_usd", optional=True),
            _float(self, "usd_per_gpu_hour"),
            _bool(self, "meets_constraints"),
            _str(self, "why_not", optional=True),
            _float_dict(self, "memory_breakdown_gib", optional=True),
            _float(self, "hbm_gib", optional=True),
            _str(self, "binding_constraint", optional=True),
        )


@_model
class Closest(_Model):
    """When nothing meets budget/deadline: the nearest option and by how much it misses."""

    config: Recommended = _f("the nearest configuration")
    hours: float = _f("its wall-clock hours")
    cost_usd: float = _f("its on-demand dollars")
    shortfall_usd: float = _f("dollars over the budget", default=0.0)
    shortfall_hours: float = _f("hours past the deadline", default=0.0)
    why: str = _f("the miss in words")

    def validate(self) -> None:
        _check(
            _nested(self, "config", Recommended),
            _float(self, "hours"),
            _float(self, "cost_usd"),
            _float(self, "shortfall_usd"),
            _float(self, "shortfall_hours"),
            _str(self, "why"),
        )


@_model
class Hyperparameters(_Model):
    """What the trainer is given, each value with the rule that chose it."""

    learning_rate: float = _f("peak learning rate")
    lr_scheduler: Literal["cosine"] = _f("learning-rate schedule", default="cosine")
    warmup_ratio: float = _f("fraction of steps warming up")
    weight_decay: float = _f("AdamW weight decay")
    epochs: int = _f("passes over the data")
    max_seq_len: int = _f("longest training sequence in tokens")
    global_batch_size: int = _f("sequences per optimizer step")
    global_batch_tokens: int = _f("about how many tokens per optimizer step")
    chosen_by: dict[str, str] = _f("field -> rule id", factory=dict)

    def validate(self) -> None:
        _check(
            _float(self, "learning_rate", gt=0),
            _choice(self, "lr_scheduler", ("cosine",)),
            _float(self, "warmup_ratio", ge=0, lt=1),
            _float(self, "weight_decay", ge=0),
            _int(self, "epochs", gt=0),
            _int(self, "max_seq_len", gt=0),
            _int(self, "global_batch_size", gt=0),
            _int(self, "global_batch_tokens", gt=0),
            _str_dict(self, "chosen_by"),
        )


@_model
class Checkpointing(_Model):
    """When checkpoints are written and how much disk they take."""

    every: Literal["epoch"] = _f("one checkpoint per epoch", default="epoch")
    keep_last: int = _f("checkpoints kept", default=3)
    disk_gib_per_checkpoint: float = _f("one checkpoint: weights + optimizer states")
    disk_gib: float = _f("keep_last checkpoints together")

    def validate(self) -> None:
        _check(
            _choice(self, "every", ("epoch",)),
            _int(self, "keep_last", ge=3),
            _float(self, "disk_gib_per_checkpoint"),
            _float(self, "disk_gib"),
        )


@_model
class DeployCheck(_Model):
    """One benchmark of the deploy gate."""

    name: str = _f("benchmark name")
    max_regression: float = _f("allowed absolute drop vs the base model, in points")
    required: bool = _f("a failure blocks promotion", default=True)
    task: str | None = _f("lm-evaluation-harness task that runs this check; None: none can", default=None)
    metric: str | None = _f("the lm-eval metric key compared, e.g. 'acc,none'", default=None)
    higher_is_better: bool = _f("False for metrics where a rise is the regression", default=True)

    def validate(self) -> None:
        _check(
            _str(self, "name"),
            _float(self, "max_regression"),
            _bool(self, "required"),
            _str(self, "task", optional=True),
            _str(self, "metric", optional=True),
            _bool(self, "higher_is_better"),
        )


@_model
class DeploySettings(_Model):
    """How the deploy suite is run by `sftplan evaluate` (same settings for the base and the tuned model)."""

    batch_size: int = _f("lm-eval batch size", default=8)
    limit: int | None = _f("examples per task; None = the whole task", default=None)
    limited_can_clear: bool = _f("may a --limit run clear a required check", default=False)
    seed: int = _f("lm-eval random / numpy / torch / few-shot seed", default=1234)
    include_path: str | None = _f("folder of extra lm-eval task YAMLs", default=None)

    def validate(self) -> None:
        _check(
            _int(self, "batch_size", gt=0, le=4096),
            _int(self, "limit", gt=0, optional=True),
            _bool(self, "limited_can_clear"),
            _int(self, "seed", ge=0),
            _str(self, "include_path", optional=True),
        )


@_model
class Evaluation(_Model):
    """The golden eval after each epoch and the deploy gate."""

    golden: DataFile | None = _f("the golden set", default=None)
    after_every: Literal["epoch"] = _f("when it is scored", default="epoch")
    tolerance: float = _f("allowed relative golden-loss rise / score drop")
    min_golden_score: float | None = _f("the least golden score an epoch must reach", default=None)
    max_new_tokens: int = _f("tokens generated per golden prompt", default=32)
    deploy_suite: list[DeployCheck] = _f("benchmarks gating deployment", factory=list)
    deploy: DeploySettings | None = _f("how `sftplan evaluate` runs the suite", default=None)
    deploy_hours: float | None = _f("estimated hours of the suite (base + tuned, forward only)", default=None)
    deploy_cost_usd: float | None = _f("that time on the plan's GPUs, on-demand", default=None)

    def validate(self) -> None:
        _check(
            _nested(self, "golden", DataFile, optional=True),
            _choice(self, "after_every", ("epoch",)),
            _float(self, "tolerance", ge=0),
            _float(self, "min_golden_score", optional=True),
            _int(self, "max_new_tokens", gt=0),
            _nested_list(self, "deploy_suite", DeployCheck),
            _nested(self, "deploy", DeploySettings, optional=True),
            _float(self, "deploy_hours", optional=True),
            _float(self, "deploy_cost_usd", optional=True),
        )


def _priced_option(option: Any) -> tuple[SpecError | None, ...]:
    """The checks of the priced configuration LoraAlternative and FullSftAlternative both carry."""
    return (_str(option, "gpu", optional=True), _int(option, "num_gpus", optional=True),
            _choice(option, "strategy", STRATEGIES, optional=True), _float(option, "memory_per_gpu_gib", optional=True),
            _float(option, "hours", optional=True), _float(option, "cost_usd", optional=True))


@_model
class LoraAlternative(_Model):
    """LoRA's cheapest configuration, for comparison (or the plan when the method is lora)."""

    rank: int = _f("LoRA rank", default=16)
    dora: bool = _f("weight-decomposed LoRA (DoRA)", default=True)
    gpu: str | None = _f("GPU tier id", default=None)
    num_gpus: int | None = _f("GPUs in all", default=None)
    strategy: Strategy | None = _f("parallelism strategy", default=None)
    memory_per_gpu_gib: float | None = _f("peak memory per GPU", default=None)
    hours: float | None = _f("wall-clock hours", default=None)
    cost_usd: float | None = _f("on-demand dollars", default=None)
    full_sft_cost_ratio: float | None = _f("full SFT cost / LoRA cost", default=None)
    note: str = _f("what the estimate assumes", default="")

    def validate(self) -> None:
        _check(
            _int(self, "rank"),
            _bool(self, "dora"),
            *_priced_option(self),
            _float(self, "full_sft_cost_ratio", optional=True),
            _str(self, "note"),
        )


@_model
class LoraSettings(_Model):
    """The adapter a LoRA plan trains (peft LoraConfig): each value's rule is in chosen_by."""

    rank: int = _f("LoRA rank r", default=16)
    alpha: int = _f("LoRA alpha (the adapter's output is scaled by alpha / r)", default=32)
    dropout: float = _f("dropout on the adapter's input", default=0.05)
    dora: bool = _f("weight-decomposed LoRA (DoRA)", default=True)
    target_modules: list[str] = _f("module names; empty = all linear layers", factory=list)
    trainable_params: int | None = _f("adapter parameters", default=None)
    chosen_by: dict[str, str] = _f("field -> rule id", factory=dict)

    def validate(self) -> None:
        _check(
            _int(self, "rank", gt=0),
            _int(self, "alpha", gt=0),
            _float(self, "dropout", ge=0, lt=1),
            _bool(self, "dora"),
            _str_list(self, "target_modules"),
            _int(self, "trainable_params", ge=0, optional=True),
            _str_dict(self, "chosen_by"),
        )


@_model
class FullSftAlternative(_Model):
    """Full SFT priced beside a LoRA plan (the mirror of lora_alternative)."""

    gpu: str | None = _f("GPU tier id", default=None)
    num_gpus: int | None = _f("GPUs in all", default=None)
    strategy: Strategy | None = _f("parallelism strategy", default=None)
    memory_per_gpu_gib: float | None = _f("peak memory per GPU", default=None)
    hours: float | None = _f("wall-clock hours", default=None)
    cost_usd: float | None = _f("on-demand dollars", default=None)
    learning_rate: float | None = _f("the full-SFT learning rate", default=None)
    cost_ratio: float | None = _f("full SFT cost / LoRA cost", default=None)
    note: str = _f("what the estimate assumes", default="")

    def validate(self) -> None:
        _check(
            *_priced_option(self),
            _float(self, "learning_rate", optional=True),
            _float(self, "cost_ratio", optional=True),
            _str(self, "note"),
        )


@_model
class ModelSummary(_Model):
    """The model as resolved."""

    name: str = _f("preset id, size label or config.json path")
    family: str = _f("architecture family (llama, qwen2, ...)")
    source: Literal["preset", "config.json", "generic-size"] = _f("where the architecture came from")
    params: int = _f("every parameter")
    active_params: int = _f("parameters that touch one token (MoE)")
    note: str = _f("caveat, e.g. a generic architecture", default="")

    def validate(self) -> None:
        _check(
            _str(self, "name"),
            _str(self, "family"),
            _choice(self, "source", ("preset", "config.json", "generic-size")),
            _int(self, "params"),
            _int(self, "active_params"),
            _str(self, "note"),
        )


@_model
class Approval(_Model):
    """Who approved the plan, when, and the hashes that make both tamper-evident."""

    by: str = _f("the approver's name")
    at: str = _f("ISO-8601 UTC")
    plan_sha256: str = _f("the content hash that was approved")
    stamp_sha256: str | None = _f("sha256 of plan_sha256, by and at together: rewriting the name or time breaks it "
                                  "(absent in schema-1 files)", default=None)

    def validate(self) -> None:
        _check(
            _str(self, "by", min_length=1),
            _str(self, "at"),
            _str(self, "plan_sha256"),
            _str(self, "stamp_sha256", optional=True),
        )


@_model
class CalibrationUsed(_Model):
    """The calibration file a plan was made with (`sftplan calibrate`) and what it changed."""

    path: str = _f("the calibration file as given")
    sha256: str = _f("its content hash (part of the approved content)")
    applied: list[str] = _f("the factors used, with their class and runs", factory=list)
    foreign_versions: list[str] = _f("software versions of its runs that differ from this install", factory=list)

    def validate(self) -> None:
        _check(
            _str(self, "path"),
            _str(self, "sha256"),
            _str_list(self, "applied"),
            _str_list(self, "foreign_versions"),
        )


@_model
class Plan(_Model):
    """plan.yaml: the request, the decision, the configuration and everything the run needs."""

    schema_version: Literal[1, 2] = _f("2 now; 1 files are read and verified", default=SCHEMA_VERSION)
    request: PlanRequest = _f("what was asked")
    model: ModelSummary = _f("the model as resolved")
    method: Method = _f("full-sft or lora")
    findings: list[Finding] = _f("every rule's judgement")
    recommended: Recommended | None = _f(
        "the configuration `sftplan run` executes (LoRA's when the method is lora)", default=None)
    estimate: PlanEstimate | None = _f("the estimator's figures for it", default=None)
    closest: Closest | None = _f("when nothing meets the constraints: the nearest miss", default=None)
    tiers: list[TierRow] = _f("every GPU tier's best configuration or why none fits")
    hyperparameters: Hyperparameters = _f("what the trainer is given")
    checkpointing: Checkpointing = _f("checkpoint schedule and disk")
    evaluation: Evaluation = _f("the golden eval and the deploy gate")
    lora_alternative: LoraAlternative = _f("LoRA's cheapest configuration")
    lora: LoraSettings | None = _f("the adapter a LoRA plan trains (peft LoraConfig)", default=None)
    full_sft_alternative: FullSftAlternative | None = _f(
        "full SFT priced beside a LoRA plan (the mirror of lora_alternative)", default=None)
    warnings: list[str] = _f("what a reviewer should read twice", factory=list)
    catalog_sha256: str = _f("sha256 of the hardware catalog used", default="")
    calibration: CalibrationUsed | None = _f("correction factors from finished runs, if given", default=None)
    plan_sha256: str = _f("sha256 of the content (everything but itself and approval)", default="")
    approval: Approval | None = _f("the approval stamp, once approved", default=None)

    def validate(self) -> None:
        _check(
            _schema_version(self),
            _nested(self, "request", PlanRequest),
            _nested(self, "model", ModelSummary),
            _choice(self, "method", METHODS),
            _nested_list(self, "findings", Finding),
            _nested(self, "recommended", Recommended, optional=True),
            _nested(self, "estimate", PlanEstimate, optional=True),
            _nested(self, "closest", Closest, optional=True),
            _nested_list(self, "tiers", TierRow),
            _nested(self, "hyperparameters", Hyperparameters),
            _nested(self, "checkpointing", Checkpointing),
            _nested(self, "evaluation", Evaluation),
            _nested(self, "lora_alternative", LoraAlternative),
            _nested(self, "lora", LoraSettings, optional=True),
            _nested(self, "full_sft_alternative", FullSftAlternative, optional=True),
            _str_list(self, "warnings"),
            _str(self, "catalog_sha256"),
            _nested(self, "calibration", CalibrationUsed, optional=True),
            _str(self, "plan_sha256"),
            _nested(self, "approval", Approval, optional=True),
        )

