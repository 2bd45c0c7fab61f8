"""The estimator's five types as plain dataclasses: ModelSpec, GpuSpec, TrainConfig, MemoryBreakdown, Estimate.

`sftplan estimate` must start in well under half a second; importing pydantic and building these
schemas cost more than the whole estimate, so the estimator path uses no pydantic. The rules are the
ones models.py used to state: every field is checked against its annotation (an int is an int and
not a bool, a float also takes an int and stores it as a float, a Literal is one of its choices),
``gt``/``ge``/``le`` bounds come from the field's metadata, and a class's ``_check`` holds its
cross-field rules. A broken rule raises ``SpecError`` (a ValueError) whose message starts with the
field's name. ``from_dict`` rejects unknown keys (pydantic's ``extra="forbid"``); ``to_dict`` is the
``model_dump`` equivalent. The classes stay mutable like the pydantic models were; nothing validates
an assignment.

This module is deliberately written without ``from __future__ import annotations``: the checks are
derived from the real annotation objects when the classes are created.
"""

import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Literal

Strategy = Literal["single", "ddp", "fsdp", "zero2", "zero3", "zero3-offload", "zero3-offload-all", "megatron"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
Precision = Literal["bf16-mixed", "bf16-pure"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


class SpecError(ValueError):
    """A value that breaks a rule of one of these types: ``'<field>: <reason>'``."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason

    def under(self, prefix: str) -> "SpecError":
        """The same error for a nested field (``config.num_gpus``)."""
        return SpecError(f"{prefix}.{self.field}", self.reason)


def _bounds(*, gt=None, ge=None, le=None, default=MISSING, default_factory=MISSING):
    """A dataclass field with numeric bounds, checked at construction (pydantic's ``Field(gt=...)``)."""
    return field(default=default, default_factory=default_factory, metadata={"gt": gt, "ge": ge, "le": le})


def _rule(f) -> tuple:
    """(name, kind, choices, optional, gt, ge, le) from a field's annotation and metadata."""
    tp, optional, choices = f.type, False, None
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"{f.name}: only X | None unions are supported")
        tp = args[0]
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        tp = type(choices[0])
    elif typing.get_origin(tp) is list:
        if typing.get_args(tp) != (str,):
            raise TypeError(f"{f.name}: only list[str] is supported")
        tp = list
    elif tp not in (int, float, str, bool) and not (isinstance(tp, type) and issubclass(tp, _Spec)):
        raise TypeError(f"{f.name}: unsupported annotation {f.type!r}")
    meta = f.metadata
    return (f.name, tp, choices, optional, meta.get("gt"), meta.get("ge"), meta.get("le"))


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list of strings"}


def _kind_name(kind: type) -> str:
    return _KIND_NAMES.get(kind) or f"a {kind.__name__}"


def _dataspec(cls):
    """Make ``cls`` a slotted, keyword-only dataclass whose fields are checked in ``__post_init__``."""
    cls = dataclass(slots=True, kw_only=True)(cls)
    rules = tuple(_rule(f) for f in fields(cls))
    cls._RULES = rules
    cls._FIELDS = frozenset(r[0] for r in rules)
    cls._REQUIRED = tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)
    cls._NESTED = {r[0]: r[1] for r in rules if issubclass(r[1], _Spec)}
    cls._fast_ok = staticmethod(_compile_fast_check(cls.__name__, rules))
    return cls


def _compile_fast_check(name: str, rules: tuple):
    """A straight-line function: True when every field already has exactly its type and meets its rules.

    The planner builds three of these objects per candidate (hundreds per plan); the generic loop in
    ``_Spec.__post_init__`` costs ~10 us an object, this check a fraction of it. When it returns False
    the generic loop runs and gives the precise error (or converts an int to a float, copies a list).
    """
    ns: dict = {}
    lines = [f"def _fast_ok_{name}(s):"]
    for i, (fname, kind, choices, optional, gt, ge, le) in enumerate(rules):
        lines.append(f"    v = s.{fname}")
        if kind is list:
            test = "type(v) is list and all(type(x) is str for x in v)"
        else:
            ns[f"k{i}"] = kind
            parts = [f"type(v) is k{i}"]
            if choices is not None:
                ns[f"c{i}"] = frozenset(choices)
                parts.append(f"v in c{i}")
            for j, (op, bound) in enumerate(((">", gt), (">=", ge), ("<=", le))):
                if bound is not None:
                    ns[f"b{i}_{j}"] = bound
                    parts.append(f"v {op} b{i}_{j}")
            test = " and ".join(parts)
        lines.append(f"    if not ({'v is None or ' if optional else ''}({test})):")
        lines.append("        return False")
        if kind is list:
            lines.append(f"    s.{fname} = v if v is None else list(v)")
    lines.append("    return True")
    exec("\n".join(lines) + "\n", ns)  # noqa: S102 - built from this module's own field rules, no outside input
    return ns[f"_fast_ok_{name}"]


class _Spec:
    """The shared checks and conversions of the five types (see the module docstring)."""

    __slots__ = ()
    _RULES: tuple = ()
    _FIELDS: frozenset = frozenset()
    _REQUIRED: tuple = ()
    _NESTED: dict = {}
    _fast_ok = staticmethod(lambda s: False)

    def __post_init__(self) -> None:
        if self._fast_ok(self):
            self._check()
            return
        for name, kind, choices, optional, gt, ge, le in self._RULES:
            v = given = getattr(self, name)
            if v is None:
                if optional:
                    continue
                raise SpecError(name, f"must be {_kind_name(kind)}, got None")
            t = type(v)
            if t is not kind:
                if kind is float and isinstance(v, int) and t is not bool:
                    v = float(v)
                    setattr(self, name, v)
                elif kind is int and isinstance(v, int) and t is not bool:
                    pass  # an int subclass (IntEnum)
                elif kind is str and isinstance(v, str):
                    pass
                elif kind is not list and kind not in (int, float, bool, str) and isinstance(v, kind):
                    pass  # a nested spec's subclass
                else:
                    raise SpecError(name, f"must be {_kind_name(kind)}, got {v!r}")
            if kind is list:
                if not all(isinstance(x, str) for x in v):
                    raise SpecError(name, f"must be {_kind_name(kind)}, got {v!r}")
                setattr(self, name, list(v))
            if choices is not None and v not in choices:
                raise SpecError(name, f"must be one of {', '.join(map(str, choices))}; got {given!r}")
            if gt is not None and not v > gt:
                raise SpecError(name, f"must be > {gt}, got {given!r}")
            if ge is not None and not v >= ge:
                raise SpecError(name, f"must be >= {ge}, got {given!r}")
            if le is not None and not v <= le:
                raise SpecError(name, f"must be <= {le}, got {given!r}")
        self._check()

    def _check(self) -> None:
        """Cross-field rules (raise SpecError); never mutates."""

    @classmethod
    def from_dict(cls, data):
        """Build from a mapping (YAML, JSON), rejecting unknown and missing keys; raises SpecError."""
        if not isinstance(data, dict):
            raise SpecError("(top level)", f"expected a mapping, got {type(data).__name__}")
        for key in data:
            if key not in cls._FIELDS:
                raise SpecError(str(key), f"unknown field (valid: {', '.join(r[0] for r in cls._RULES)})")
        for name in cls._REQUIRED:
            if name not in data:
                raise SpecError(name, "required field is missing")
        kwargs = dict(data)
        for name, kind in cls._NESTED.items():
            if isinstance(kwargs.get(name), dict):
                try:
                    kwargs[name] = kind.from_dict(kwargs[name])
                except SpecError as exc:
                    raise exc.under(name) from None
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Every field by name, nested specs as dicts, lists copied (pydantic's ``model_dump()``)."""
        out = {}
        for name, *_ in self._RULES:
            v = getattr(self, name)
            if isinstance(v, _Spec):
                v = v.to_dict()
            elif isinstance(v, list):
                v = list(v)
            out[name] = v
        return out


# --------------------------------------------------------------------------- catalog entries


@_dataspec
class ModelSpec(_Spec):
    """A transformer architecture, enough to count parameters, FLOPs and activation bytes."""

    name: str  # preset id, config.json path, or generic size label such as '8B'
    family: str  # llama, mistral, mixtral, qwen2, gemma, gemma2, phi3, mpt, gpt_neox, generic
    source: Literal["preset", "config.json", "generic-size"] = "preset"
    hidden_size: int = _bounds(gt=0)
    num_layers: int = _bounds(gt=0)
    num_heads: int = _bounds(gt=0)
    num_kv_heads: int = _bounds(gt=0)
    head_dim: int | None = _bounds(gt=0, default=None)  # defaults to hidden_size // num_heads
    ffn_size: int = _bounds(gt=0)  # intermediate size of one MLP (one expert for MoE)
    ffn_kind: Literal["gated", "mlp"]  # gated = SwiGLU/GeGLU (3 matrices), mlp = 2 matrices
    vocab_size: int = _bounds(gt=0)
    tied_embeddings: bool = False
    max_context: int = _bounds(gt=0)
    num_experts: int = _bounds(ge=1, default=1)
    experts_per_token: int = _bounds(ge=1, default=1)
    published_params: int | None = None  # vendor's published count, for tests

    def _check(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise SpecError("num_heads",
                            f"must be a multiple of num_kv_heads ({self.num_kv_heads}), got {self.num_heads}")
        if self.experts_per_token > self.num_experts:
            raise SpecError("experts_per_token",
                            f"cannot exceed num_experts ({self.num_experts}), got {self.experts_per_token}")

    @property
    def head_dim_effective(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


@_dataspec
class GpuSpec(_Spec):
    """One GPU tier of data/hardware_catalog.yaml. Every field carries its unit."""

    id: str
    name: str
    vendor: Literal["nvidia", "amd"]
    hbm_gib: float = _bounds(gt=0)  # usable device memory, GiB
    peak_bf16_dense_tflops: float = _bounds(gt=0)  # dense (no 2:4 sparsity)
    hbm_bandwidth_tb_per_s: float = _bounds(gt=0)
    intra_node_link: str
    intra_node_bandwidth_gb_per_s: float = _bounds(gt=0)  # per GPU, one direction
    pcie_bandwidth_gb_per_s: float = _bounds(gt=0)  # host<->device, for offload traffic
    gpus_per_node: int = _bounds(gt=0)
    host_ram_gib_per_node: float = _bounds(gt=0)
    inter_node_bandwidth_gbit_per_s: float = _bounds(ge=0)  # per node; 0 = no multi-node
    max_nodes: int = _bounds(ge=1)
    usd_per_gpu_hour: float = _bounds(gt=0)
    price_source: str
    price_as_of: str
    mfu: float = _bounds(gt=0, le=1)  # assumed model FLOPs utilisation at a healthy micro-batch
    mfu_source: str
    megatron_supported: bool = True
    notes: str = ""


# --------------------------------------------------------------------------- estimator in/out


@_dataspec
class TrainConfig(_Spec):
    """One candidate training configuration on one GPU tier."""

    num_gpus: int = _bounds(gt=0)
    strategy: Strategy
    precision: Precision = "bf16-mixed"
    seq_len: int = _bounds(gt=0)
    micro_batch_size: int = _bounds(gt=0)
    grad_accum: int = _bounds(gt=0, default=1)
    activation_checkpointing: bool = True
    tp: int = _bounds(gt=0, default=1)
    pp: int = _bounds(gt=0, default=1)
    trainable: Literal["full", "lora"] = "full"
    lora_rank: int = _bounds(gt=0, default=16)
    loss_chunks: int = _bounds(gt=0, default=1)  # 1 = full-vocab logits (HF loss); >1 = chunked cross-entropy
    memory_headroom: float = _bounds(ge=0, le=0.5, default=0.10)  # fraction of the GPU's memory kept free

    def _check(self) -> None:
        if self.num_gpus % (self.tp * self.pp):
            raise SpecError("num_gpus", f"must be a multiple of tp x pp ({self.tp * self.pp}), got {self.num_gpus}")
        if (self.tp > 1 or self.pp > 1) and self.strategy != "megatron":
            raise SpecError("tp" if self.tp > 1 else "pp", "above 1 needs strategy 'megatron'")
        if self.strategy == "single" and self.num_gpus != 1:
            raise SpecError("strategy", f"'single' needs num_gpus 1, got {self.num_gpus}")


@_dataspec
class MemoryBreakdown(_Spec):
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
        return (self.weights + self.gradients + self.optimizer + self.activations + self.logits
                + self.gathered_layer + self.overhead)


@_dataspec
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
