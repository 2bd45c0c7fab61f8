"""The one schema: pydantic v2 models shared by the CLI, request YAML, plan files, the TUI and the executor.

Flat models, ``extra="forbid"``, units in every quantity's name. Judgement ("won't fit", "prefer
LoRA") is a rule's Finding, never a validator here; validators only reject impossible input.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Strategy = Literal["single", "ddp", "fsdp", "zero2", "zero3", "zero3-offload", "zero3-offload-all", "megatron"]
STRATEGIES: tuple[str, ...] = Strategy.__args__  # type: ignore[attr-defined]
Precision = Literal["bf16-mixed", "bf16-pure"]
Goal = Literal["lora-below-bar", "new-tokenizer", "deep-retask", "hard-reasoning", "fast-iteration", "lora-cleared-bar"]
GOALS: tuple[str, ...] = Goal.__args__  # type: ignore[attr-defined]
Method = Literal["full-sft", "lora"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, defer_build=True)  # schemas built on first use: `sftplan estimate` validates 5 of 23 models


# --------------------------------------------------------------------------- catalog entries


class ModelSpec(_Model):
    """A transformer architecture, enough to count parameters, FLOPs and activation bytes."""

    name: str = Field(description="preset id, config.json path, or generic size label such as '8B'")
    family: str = Field(description="llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, mpt, gpt_neox, generic")
    source: Literal["preset", "config.json", "generic-size"] = "preset"
    hidden_size: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int | None = Field(default=None, gt=0, description="defaults to hidden_size // num_heads")
    ffn_size: int = Field(gt=0, description="intermediate size of one MLP (one expert for MoE)")
    ffn_kind: Literal["gated", "mlp"] = Field(description="gated = SwiGLU/GeGLU (3 matrices), mlp = 2 matrices")
    vocab_size: int = Field(gt=0)
    tied_embeddings: bool = False
    max_context: int = Field(gt=0)
    num_experts: int = Field(default=1, ge=1)
    experts_per_token: int = Field(default=1, ge=1)
    published_params: int | None = Field(default=None, description="vendor's published count, for tests")

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.experts_per_token > self.num_experts:
            raise ValueError("experts_per_token cannot exceed num_experts")
        return self

    @property
    def head_dim_effective(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


class GpuSpec(_Model):
    """One GPU tier of data/hardware_catalog.yaml. Every field carries its unit."""

    id: str
    name: str
    vendor: Literal["nvidia", "amd"]
    hbm_gib: float = Field(gt=0, description="usable device memory, GiB")
    peak_bf16_dense_tflops: float = Field(gt=0, description="dense (no 2:4 sparsity)")
    hbm_bandwidth_tb_per_s: float = Field(gt=0)
    intra_node_link: str
    intra_node_bandwidth_gb_per_s: float = Field(gt=0, description="per GPU, one direction")
    pcie_bandwidth_gb_per_s: float = Field(gt=0, description="host<->device, for offload traffic")
    gpus_per_node: int = Field(gt=0)
    host_ram_gib_per_node: float = Field(gt=0)
    inter_node_bandwidth_gbit_per_s: float = Field(ge=0, description="per node; 0 = no multi-node")
    max_nodes: int = Field(ge=1)
    usd_per_gpu_hour: float = Field(gt=0)
    price_source: str
    price_as_of: str
    mfu: float = Field(gt=0, le=1, description="assumed model FLOPs utilisation at a healthy micro-batch")
    mfu_source: str
    megatron_supported: bool = True
    notes: str = ""


# --------------------------------------------------------------------------- estimator in/out


class TrainConfig(_Model):
    """One candidate training configuration on one GPU tier."""

    num_gpus: int = Field(gt=0)
    strategy: Strategy
    precision: Precision = "bf16-mixed"
    seq_len: int = Field(gt=0)
    micro_batch_size: int = Field(gt=0)
    grad_accum: int = Field(default=1, gt=0)
    activation_checkpointing: bool = True
    tp: int = Field(default=1, gt=0)
    pp: int = Field(default=1, gt=0)
    trainable: Literal["full", "lora"] = "full"
    lora_rank: int = Field(default=16, gt=0)
    loss_chunks: int = Field(default=1, gt=0, description="1 = full-vocab logits (HF loss); >1 = chunked cross-entropy")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.num_gpus % (self.tp * self.pp):
            raise ValueError(f"num_gpus ({self.num_gpus}) must be a multiple of tp x pp ({self.tp * self.pp})")
        if (self.tp > 1 or self.pp > 1) and self.strategy != "megatron":
            raise ValueError("tp/pp above 1 need strategy 'megatron'")
        if self.strategy == "single" and self.num_gpus != 1:
            raise ValueError("strategy 'single' needs num_gpus 1")
        return self


class MemoryBreakdown(_Model):
    """Bytes per GPU by component (integers; rounding happens only in render.py)."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    logits: int = 0
    gathered_layer: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, k) for k in type(self).model_fields)


class Estimate(_Model):
    """What the estimator says of one (model, GPU tier, TrainConfig)."""

    model_name: str
    gpu: str
    config: TrainConfig
    model_params: int
    active_params: int
    trainable_params: int
    memory: MemoryBreakdown
    memory_per_gpu_bytes: int
    hbm_bytes: int
    fits: bool
    headroom_bytes: int = Field(description="hbm minus need; negative when it does not fit")
    cpu_memory_per_node_bytes: int = 0
    cpu_fits: bool = True
    flops_per_token: float
    tokens_per_s_per_gpu: float
    mfu: float
    step_time_s: float
    compute_time_s: float
    comm_time_s: float = 0.0
    offload_time_s: float = 0.0
    bottleneck: Literal["compute", "communication", "offload"] = "compute"
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- request


class DataFile(_Model):
    """A data file the approver approves: path and content hash."""

    path: str
    sha256: str
    rows: int = Field(ge=0)


class DatasetSpec(_Model):
    examples: int = Field(gt=0)
    avg_tokens: int = Field(gt=0, description="mean tokens per example (prompt + response)")
    file: DataFile | None = None
    token_p50: int | None = None
    token_p95: int | None = None
    token_max: int | None = None
    token_count_method: str = "given"


class OwnedHardware(_Model):
    gpu: str
    count: int = Field(gt=0)


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
    gate_tolerance: float = Field(default=0.02, ge=0, description="allowed relative golden-loss rise / score drop")
    min_golden_score: float | None = Field(default=None, ge=0, le=1)


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


class TierRow(_Model):
    gpu: str
    fits: bool
    config: Recommended | None = None
    memory_per_gpu_gib: float | None = None
    hours: float | None = None
    cost_usd: float | None = None
    usd_per_gpu_hour: float
    meets_constraints: bool = False
    why_not: str | None = None


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


class Evaluation(_Model):
    golden: DataFile | None = None
    after_every: Literal["epoch"] = "epoch"
    tolerance: float = Field(ge=0)
    min_golden_score: float | None = None
    max_new_tokens: int = Field(default=32, gt=0)
    deploy_suite: list[DeployCheck] = Field(default_factory=list)


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


class Plan(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
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
