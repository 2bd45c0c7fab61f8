"""The estimator's five types as plain dataclasses (ModelSpec, GpuSpec, TrainConfig, MemoryBreakdown,
Estimate), and the checkers every schema's ``validate()`` is written with (these and advisor/models.py).

`sftplan estimate` must start in well under half a second (benchmarks/latency.py), so no schema
library: each type is a dataclass with a ``validate()`` written out by hand (called on construction):
an int is an int and not a bool, a float also takes an int and stores it as a float and is finite, a
choice is one of its values, bounds as stated, then the class's cross-field rules. Broken rules raise
one ``SpecError`` (a UserError and a ValueError) on the first field, every problem in ``.problems``.
``from_dict`` rejects unknown and missing keys; ``to_dict`` gives plain data; ``replace`` a validated
copy. The objects are mutable; nothing validates an assignment.
"""

from __future__ import annotations

import math
import typing
import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal

from advisor.errors import UserError, did_you_mean

Strategy = Literal["single", "ddp", "fsdp", "zero2", "zero3", "zero3-offload", "zero3-offload-all", "megatron", "hsdp",
                   "fsdp-tp", "zero3-sp"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
Precision = Literal["bf16-mixed", "bf16-pure"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


class SpecError(UserError, ValueError):
    """Values that break the rules of a schema type: ``'<field>: <reason>'`` for the first, and every
    (field path, reason) found in ``problems`` (the TUI marks each field); the message counts the rest."""

    def __init__(self, field_name: str, reason: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or [(field_name, reason)]
        more = len(self.problems) - 1
        shown = reason + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        super().__init__(shown, field=field_name)
        self.reason = shown

    def under(self, prefix: str) -> SpecError:
        """The same errors for a nested field (``config.num_gpus``, ``have[0].count``)."""
        problems = [(prefix if f == "(top level)" else f"{prefix}.{f}", r) for f, r in self.problems]
        return SpecError(problems[0][0], problems[0][1], problems)


# --------------------------------------------------------------------------- the checks validate() is written with
# Shared by these five types and the request/plan models (advisor/models.py): one validation system. Each
# checker returns the SpecError of its field (or None); validate() passes them all to _check, which raises
# one SpecError holding every problem, the first one named.
def _check(*results: SpecError | None) -> None:
    problems = [p for e in results if e is not None for p in e.problems]
    if problems:
        raise SpecError(problems[0][0], problems[0][1], problems)


def _int(obj: Any, name: str, gt: int | None = None, ge: int | None = None, le: int | None = None,
         optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    if type(v) is not int and (not isinstance(v, int) or isinstance(v, bool)):
        return SpecError(name, f"must be an integer, got {v!r}")
    if gt is not None and not v > gt:
        return SpecError(name, f"must be > {gt}, got {v!r}")
    if ge is not None and not v >= ge:
        return SpecError(name, f"must be >= {ge}, got {v!r}")
    if le is not None and not v <= le:
        return SpecError(name, f"must be <= {le}, got {v!r}")
    return None


def _number(name: str, v: Any, gt: float | None, ge: float | None, le: float | None,
            lt: float | None) -> float | SpecError:
    """``v`` as a float (an int is taken and stored as a float; a bool, inf or nan is not), within the bounds."""
    given = v
    if type(v) is not float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return SpecError(name, f"must be a number, got {given!r}")
        v = float(v)  # an int, or a float subclass (numpy's): stored as a plain float
    if not math.isfinite(v):
        return SpecError(name, f"must be a finite number, got {given!r}")
    if gt is not None and not v > gt:
        return SpecError(name, f"must be > {gt}, got {given!r}")
    if ge is not None and not v >= ge:
        return SpecError(name, f"must be >= {ge}, got {given!r}")
    if le is not None and not v <= le:
        return SpecError(name, f"must be <= {le}, got {given!r}")
    if lt is not None and not v < lt:
        return SpecError(name, f"must be < {lt}, got {given!r}")
    return v


def _float(obj: Any, name: str, gt: float | None = None, ge: float | None = None, le: float | None = None,
           lt: float | None = None, optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    number = _number(name, v, gt, ge, le, lt)
    if isinstance(number, SpecError):
        return number
    if number is not v:
        setattr(obj, name, number)
    return None


def _str(obj: Any, name: str, min_length: int = 0, optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    if not isinstance(v, str):
        return SpecError(name, f"must be a string, got {v!r}")
    if len(v) < min_length:
        return SpecError(name, f"must not be empty, got {v!r}")
    return None


def _bool(obj: Any, name: str) -> SpecError | None:
    v = getattr(obj, name)
    if type(v) is not bool:
        return SpecError(name, f"must be true or false, got {v!r}")
    return None


def _is_choice(name: str, v: Any, choices: tuple[str, ...]) -> SpecError | None:
    if v not in choices or not isinstance(v, str):
        hint = did_you_mean(v, list(choices)) if isinstance(v, str) else ""
        return SpecError(name, f"must be one of {', '.join(choices)}; got {v!r}{hint}")
    return None


def _choice(obj: Any, name: str, choices: tuple[str, ...], optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    return _is_choice(name, v, choices)


def _all(errors: list[SpecError | None]) -> SpecError | None:
    """One SpecError holding every problem of ``errors`` (None when there is none)."""
    problems = [p for e in errors if e is not None for p in e.problems]
    return SpecError(problems[0][0], problems[0][1], problems) if problems else None


def _str_list(obj: Any, name: str) -> SpecError | None:
    v = getattr(obj, name)
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return SpecError(name, f"must be a list of strings, got {v!r}")
    setattr(obj, name, list(v))  # the object owns its list
    return None


def _choice_list(obj: Any, name: str, choices: tuple[str, ...]) -> SpecError | None:
    v = getattr(obj, name)
    if not isinstance(v, (list, tuple)):
        return SpecError(name, f"must be a list, got {v!r}")
    setattr(obj, name, list(v))
    return _all([_is_choice(f"{name}[{i}]", x, choices) for i, x in enumerate(v)])


def _str_dict(obj: Any, name: str) -> SpecError | None:
    v = getattr(obj, name)
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        return SpecError(name, f"must be a mapping of strings to strings, got {v!r}")
    setattr(obj, name, dict(v))
    return None


def _float_dict(obj: Any, name: str, optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        return SpecError(name, f"must be a mapping of names to numbers, got {v!r}")
    numbers = {k: _number(f"{name}.{k}", x, None, None, None, None) for k, x in v.items()}
    errors = [x for x in numbers.values() if isinstance(x, SpecError)]
    if errors:
        return _all(errors)
    setattr(obj, name, numbers)
    return None


def _build(name: str, v: Any, kind: type) -> Any:
    """``v`` as a ``kind``: an instance as it is, a mapping through ``kind.from_dict``; or the SpecError
    (under ``name``)."""
    if isinstance(v, kind):
        return v
    if isinstance(v, dict):
        try:
            return kind.from_dict(v)
        except SpecError as exc:
            return exc.under(name)
    return SpecError(name, f"must be a mapping ({kind.__name__}), got {v!r}")


def _nested(obj: Any, name: str, kind: type, optional: bool = False) -> SpecError | None:
    v = getattr(obj, name)
    if v is None and optional:
        return None
    built = _build(name, v, kind)
    if isinstance(built, SpecError):
        return built
    if built is not v:
        setattr(obj, name, built)
    return None


def _nested_list(obj: Any, name: str, kind: type) -> SpecError | None:
    v = getattr(obj, name)
    if not isinstance(v, (list, tuple)):
        return SpecError(name, f"must be a list, got {v!r}")
    built = [_build(f"{name}[{i}]", x, kind) for i, x in enumerate(v)]
    errors = [x for x in built if isinstance(x, SpecError)]
    if errors:
        return _all(errors)
    setattr(obj, name, built)
    return None


def _plain(v: Any) -> Any:
    """A value as plain data: schema objects as dicts, lists and dicts copied (what YAML and JSON hold)."""
    if isinstance(v, _Spec):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


class _Spec:
    """from_dict / to_dict / replace shared by every schema type; each class writes its own ``validate()``."""

    __slots__ = ()
    NESTED: ClassVar[dict[str, type]] = {}  # field -> spec type, built from a nested mapping by from_dict

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Any):
        """Build from a mapping (YAML, JSON), rejecting unknown and missing keys; raises SpecError."""
        if not isinstance(data, dict):
            raise SpecError("(top level)", f"expected a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        _check(*(SpecError(str(key), f"unknown field (valid: {', '.join(names)})") for key in data if key not in names),
               *(SpecError(f.name, "required field is missing") for f in fields(cls)
                 if f.default is MISSING and f.default_factory is MISSING and f.name not in data))
        kwargs = dict(data)
        for name, kind in cls.NESTED.items():
            if isinstance(kwargs.get(name), dict):
                try:
                    kwargs[name] = kind.from_dict(kwargs[name])
                except SpecError as exc:
                    raise exc.under(name) from None
        return cls(**kwargs)

    def to_dict(self, exclude_defaults: bool = False) -> dict:
        """Every field by name as plain data (nested types as dicts, lists copied); with ``exclude_defaults``,
        only the fields (at every level) whose value differs from the field's default."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if exclude_defaults:
                if (f.default is not MISSING and v == f.default) or (
                        f.default_factory is not MISSING and v == f.default_factory()):
                    continue
                out[f.name] = v.to_dict(exclude_defaults=True) if isinstance(v, _Spec) else _plain(v)
            else:
                out[f.name] = _plain(v)
        return out

    def replace(self, **changes: Any):
        """A copy with ``changes``, validated like a new object (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- catalog entries


@dataclass(slots=True, kw_only=True)
class ModelSpec(_Spec):
    """A transformer architecture, enough to count parameters, FLOPs and activation bytes."""

    name: str  # preset id, config.json path, or generic size label such as '8B'
    family: str  # llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, mpt, gpt_neox, generic
    source: Literal["preset", "config.json", "generic-size"] = "preset"
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None  # defaults to hidden_size // num_heads
    ffn_size: int  # intermediate size of one MLP (one expert for MoE)
    ffn_kind: Literal["gated", "mlp"]  # gated = SwiGLU/GeGLU (3 matrices), mlp = 2 matrices
    vocab_size: int
    tied_embeddings: bool = False
    max_context: int
    num_experts: int = 1
    experts_per_token: int = 1
    published_params: int | None = None  # vendor's published count, for tests
    # sliding-window (banded) attention: `sliding_window_layers` of the layers attend to the last
    # `sliding_window` tokens only (gpt-oss: every second layer, 128 tokens; config.json layer_types)
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    # the routed experts' two linears carry biases (gpt-oss: mlp.experts.gate_up_proj_bias / down_proj_bias; their
    # 0.03% of the parameters are not counted) and the GLU clamps its inputs (gpt-oss config.json `swiglu_limit` 7.0:
    # the gate half at most the limit, the linear half within +-limit); both priced only where an engine runs them
    # as eager ops (EngineKernels.eager_expert_epilogue)
    expert_bias: bool = False
    glu_clamp: float | None = None

    def validate(self) -> None:
        _check(
            _str(self, "name"),
            _str(self, "family"),
            _choice(self, "source", ("preset", "config.json", "generic-size")),
            *(_int(self, name, gt=0) for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "ffn_size",
                                                   "vocab_size", "max_context")),
            _int(self, "head_dim", gt=0, optional=True),
            _choice(self, "ffn_kind", ("gated", "mlp")),
            _bool(self, "tied_embeddings"),
            _int(self, "num_experts", ge=1),
            _int(self, "experts_per_token", ge=1),
            _int(self, "published_params", optional=True),
            _int(self, "sliding_window", gt=0, optional=True),
            _int(self, "sliding_window_layers", ge=0),
            _bool(self, "expert_bias"),
            _float(self, "glu_clamp", gt=0, optional=True),
        )
        if self.sliding_window_layers > self.num_layers:
            raise SpecError("sliding_window_layers",
                            f"cannot exceed num_layers ({self.num_layers}), got {self.sliding_window_layers}")
        if self.num_heads % self.num_kv_heads:
            raise SpecError("num_heads",
                            f"must be a multiple of num_kv_heads ({self.num_kv_heads}), got {self.num_heads}")
        if self.glu_clamp is not None and self.ffn_kind != "gated":
            raise SpecError("glu_clamp", f"clamps a gated MLP's inputs: needs ffn_kind gated, got {self.ffn_kind!r}")
        if self.expert_bias and self.num_experts <= 1:
            raise SpecError("expert_bias", f"the routed experts' biases: needs num_experts > 1, got {self.num_experts}")
        if self.experts_per_token > self.num_experts:
            raise SpecError("experts_per_token",
                            f"cannot exceed num_experts ({self.num_experts}), got {self.experts_per_token}")

    @property
    def head_dim_effective(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


@dataclass(slots=True, kw_only=True)
class GpuSpec(_Spec):
    """One GPU tier of data/hardware_catalog.yaml. Every field carries its unit."""

    id: str
    name: str
    vendor: Literal["nvidia", "amd", "cpu"]  # cpu: the host itself (the demo's and CPU tests' tier)
    hbm_gib: float  # usable device memory, GiB
    peak_bf16_dense_tflops: float  # dense (no 2:4 sparsity)
    hbm_bandwidth_tb_per_s: float
    intra_node_link: str
    intra_node_bandwidth_gb_per_s: float  # per GPU, one direction
    pcie_bandwidth_gb_per_s: float  # host<->device, for offload traffic
    gpus_per_node: int
    host_ram_gib_per_node: float
    inter_node_bandwidth_gbit_per_s: float  # per node; 0 = no multi-node
    max_nodes: int
    usd_per_gpu_hour: float
    price_source: str
    price_as_of: str
    mfu: float  # assumed model FLOPs utilisation at a healthy micro-batch
    mfu_source: str
    megatron_supported: bool = True
    host_cpu_cores_per_node: int = 48  # physical cores (vCPUs / 2): the host optimizer's rate
    notes: str = ""
    # fixed seconds per optimizer step / per micro-batch that FLOPs do not count (advisor/step_overhead.py);
    # None: that module's default for the vendor (GPUs: the kernel-launch floor; cpu: measured)
    step_overhead_s: float | None = None
    micro_batch_overhead_s: float | None = None
    # cpu tier: RSS of a process that has imported the executor's runtime, before its tensors (measured by
    # `sftplan catalog --measure cpu`; the memory estimate's host_runtime line). None: no such line
    host_runtime_gib: float | None = None
    # seconds a run pays before training (launch, imports, process-group init) when the tier has a measured
    # figure (cpu: `sftplan catalog --measure cpu`); None: advisor/cost.py's STARTUP_S assumption
    startup_s: float | None = None

    @property
    def max_gpus(self) -> int:
        """The most GPUs this tier scales to in the catalog: a node's GPUs x its node limit."""
        return self.gpus_per_node * self.max_nodes

    def check_scales_to(self, num_gpus: int) -> None:
        """A GPU count beyond the tier is bad input on num_gpus (`plan` and `estimate` refuse it alike)."""
        if num_gpus > self.max_gpus:
            raise UserError(f"{self.id} scales to {self.max_gpus} GPUs in this catalog, got {num_gpus}",
                            field="num_gpus")

    def validate(self) -> None:
        _check(
            *(_str(self, name) for name in ("id", "name", "intra_node_link", "price_source", "price_as_of", "mfu_source",
                                            "notes")),
            _choice(self, "vendor", ("nvidia", "amd", "cpu")),
            *(_float(self, name, gt=0) for name in ("hbm_gib", "peak_bf16_dense_tflops", "hbm_bandwidth_tb_per_s",
                                                     "intra_node_bandwidth_gb_per_s", "pcie_bandwidth_gb_per_s",
                                                     "host_ram_gib_per_node", "usd_per_gpu_hour")),
            _float(self, "inter_node_bandwidth_gbit_per_s", ge=0),
            _float(self, "mfu", gt=0, le=1),
            _int(self, "gpus_per_node", gt=0),
            _int(self, "max_nodes", ge=1),
            _int(self, "host_cpu_cores_per_node", gt=0),
            _bool(self, "megatron_supported"),
            _float(self, "step_overhead_s", ge=0, optional=True),
            _float(self, "micro_batch_overhead_s", ge=0, optional=True),
            _float(self, "host_runtime_gib", ge=0, optional=True),
            _float(self, "startup_s", ge=0, optional=True),
        )


# --------------------------------------------------------------------------- estimator in/out


@dataclass(slots=True, kw_only=True)
class TrainConfig(_Spec):
    """One candidate training configuration on one GPU tier."""

    num_gpus: int
    strategy: Strategy
    precision: Precision = "bf16-mixed"
    seq_len: int
    micro_batch_size: int
    grad_accum: int = 1
    activation_checkpointing: bool = True
    tp: int = 1
    pp: int = 1
    trainable: Literal["full", "lora"] = "full"
    lora_rank: int = 16
    loss_chunks: int = 1  # 1 = full-vocab logits (HF loss); >1 = chunked cross-entropy
    memory_headroom: float = 0.10  # fraction of the GPU's memory kept free
    attention: Literal["auto", "flash"] = "auto"  # auto: what transformers runs per family (eager for Gemma 2, MPT)

    def validate(self) -> None:
        _check(
            *(_int(self, name, gt=0) for name in ("num_gpus", "seq_len", "micro_batch_size", "grad_accum", "tp", "pp",
                                                   "lora_rank", "loss_chunks")),
            _choice(self, "strategy", STRATEGIES),
            _choice(self, "precision", PRECISIONS),
            _bool(self, "activation_checkpointing"),
            _choice(self, "trainable", ("full", "lora")),
            _float(self, "memory_headroom", ge=0, le=0.5),
            _choice(self, "attention", ("auto", "flash")),
        )
        if self.num_gpus % (self.tp * self.pp):
            raise SpecError("num_gpus", f"must be a multiple of tp x pp ({self.tp * self.pp}), got {self.num_gpus}")
        if self.pp > 1 and self.strategy != "megatron":
            raise SpecError("pp", "above 1 needs strategy 'megatron'")
        if self.tp > 1 and self.strategy not in ("megatron", "fsdp-tp"):
            raise SpecError("tp", "above 1 needs strategy 'megatron' or 'fsdp-tp'")
        if self.strategy == "fsdp-tp" and self.tp < 2:
            raise SpecError("tp", f"strategy 'fsdp-tp' needs tp of 2 or more, got {self.tp}")
        if self.strategy == "single" and self.num_gpus != 1:
            raise SpecError("strategy", f"'single' needs num_gpus 1, got {self.num_gpus}")


def tp_splits_heads(model: ModelSpec, tp: int) -> bool:
    """Whether tensor parallel ``tp`` divides the attention and key-value heads (check_tensor_parallel's rule)."""
    return tp <= 1 or not (model.num_heads % tp or model.num_kv_heads % tp)


def check_tensor_parallel(model: ModelSpec, cfg: TrainConfig) -> None:
    """A tp that splits the model's heads unevenly cannot run: Megatron-LM (TransformerConfig: num_attention_heads
    and num_query_groups each a multiple of tensor_model_parallel_size) and transformers' tp_plan (colwise q/k/v:
    get_kv_heads_per_rank refuses kv heads tp does not divide) both need tp to divide the attention and key-value
    heads. A SpecError on ``tp``."""
    if not tp_splits_heads(model, cfg.tp):
        raise SpecError("tp", f"must divide {model.name}'s {model.num_heads} attention heads and {model.num_kv_heads} "
                              f"key-value heads (Megatron-LM and transformers' tp_plan split them), got {cfg.tp}")


@dataclass(slots=True, kw_only=True)
class MemoryBreakdown(_Spec):
    """Bytes per GPU by component (integers; rounding happens only in render.py)."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    logits: int = 0
    gathered_layer: int = 0
    # What no traced tensor shows, each from a published figure (advisor/memory_overheads.py)
    cuda_context: int = 0
    cublas_workspace: int = 0
    nccl_buffers: int = 0
    fragmentation: int = 0
    # cpu tier only: the Python + torch + transformers runtime in the process RSS (advisor/memory_overheads.py)
    host_runtime: int = 0

    def validate(self) -> None:
        _check(*(_int(self, name) for name in ("weights", "gradients", "optimizer", "activations", "logits",
                                                "gathered_layer", "cuda_context", "cublas_workspace", "nccl_buffers",
                                                "fragmentation", "host_runtime")))

    def to_dict(self, exclude_defaults: bool = False) -> dict:
        """host_runtime only where a tier has it (cpu): GPU breakdowns keep the keys they always had."""
        out = _Spec.to_dict(self, exclude_defaults)
        if not self.host_runtime:
            out.pop("host_runtime", None)
        return out

    @property
    def overhead(self) -> int:
        """The non-tensor components together."""
        return self.cuda_context + self.cublas_workspace + self.nccl_buffers + self.fragmentation + self.host_runtime

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.activations + self.logits
                + self.gathered_layer + self.overhead)


@dataclass(slots=True, kw_only=True)
class Estimate(_Spec):
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
    fits: bool  # the estimate leaves memory_headroom of hbm free (and host RAM suffices, and it runs)
    headroom_bytes: int  # hbm minus need: memory to spare; negative when it does not fit at all
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
    notes: list[str] = field(default_factory=list)
    usable_bytes: int = 0  # hbm minus the safety margin (config.memory_headroom): what a fit may use
    tight: bool = False  # fits the GPU but inside the safety margin: never recommended
    raw_memory_per_gpu_bytes: int = 0  # before calibration (advisor/calibration.py); = memory.total
    raw_tokens_per_s_per_gpu: float = 0.0  # before calibration
    calibration: str = ""  # which factors were applied and where they came from; '' = none given
    raw_step_time_s: float = 0.0  # before calibration
    step_overhead_s: float = 0.0  # the fixed part of raw_step_time_s (advisor/step_overhead.py)

    NESTED: ClassVar[dict[str, type]] = {"config": TrainConfig, "memory": MemoryBreakdown}

    def validate(self) -> None:
        _check(
            _str(self, "model_name"),
            _str(self, "gpu"),
            _nested(self, "config", TrainConfig),
            _nested(self, "memory", MemoryBreakdown),
            *(_int(self, name) for name in ("model_params", "active_params", "trainable_params", "memory_per_gpu_bytes",
                                            "hbm_bytes", "headroom_bytes", "cpu_memory_per_node_bytes", "usable_bytes",
                                            "raw_memory_per_gpu_bytes")),
            _float(self, "raw_tokens_per_s_per_gpu"),
            _str(self, "calibration"),
            _float(self, "raw_step_time_s"),
            _float(self, "step_overhead_s"),
            *(_bool(self, name) for name in ("fits", "cpu_fits", "tight")),
            *(_float(self, name) for name in ("flops_per_token", "tokens_per_s_per_gpu", "mfu", "step_time_s",
                                              "compute_time_s", "comm_time_s", "offload_time_s")),
            _choice(self, "bottleneck", ("compute", "communication", "offload")),
            _str_list(self, "notes"),
        )
