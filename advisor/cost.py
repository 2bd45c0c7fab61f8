"""GPU-hours, dollars and checkpoint disk."""

from __future__ import annotations

from advisor.architecture import param_count
from advisor.memory import FSDP_LIKE
from advisor.specs import GpuSpec, ModelSpec
from advisor.units import SECONDS_PER_HOUR


def checkpoint_bytes_per_param(precision: str = "bf16-mixed", strategy: str = "fsdp") -> int:
    """Bytes per parameter of one resumable checkpoint, as the executor writes it (the one formula:
    the planner's disk figure and executor/preflight.py's disk check both use it).

    bf16-mixed: Trainer under DDP keeps the weights in fp32 and saves them (4 B/param, they are the master
    weights) beside Adam's two fp32 moments (8): 12. FSDP / HSDP / FSDP x TP write the sharded fp32 weights
    (4) and moments (8) a resume reads (torch DCP) and, for evaluation and promotion, the gathered full
    weights again (4): 16. DeepSpeed ZeRO saves its bf16 weights (2) and its fp32 master weights (4) beside
    the moments (8): 14. bf16-pure: bf16 weights (2) and bf16 moments (4), no master copy: 6 (FSDP-like:
    8, the full weights again). Checked against the checkpoints the executor writes
    (tests/executor/test_distributed.py).
    """
    full_copy = strategy in FSDP_LIKE
    if precision == "bf16-pure":
        return 2 + 4 + (2 if full_copy else 0)
    return 2 + 4 + 8 if strategy.startswith("zero") else 4 + 8 + (4 if full_copy else 0)


def checkpoint_bytes(m: ModelSpec, precision: str = "bf16-mixed", strategy: str = "fsdp") -> int:
    """One resumable checkpoint of ``m`` (``checkpoint_bytes_per_param`` x every parameter)."""
    return checkpoint_bytes_per_param(precision, strategy) * param_count(m)


def gpu_hours(hours: float, num_gpus: int) -> float:
    return hours * num_gpus


def cost_usd(hours: float, num_gpus: int, gpu: GpuSpec) -> float:
    """On-demand dollars: GPU-hours x the catalog's USD per GPU-hour."""
    return gpu_hours(hours, num_gpus) * gpu.usd_per_gpu_hour


# Fixed time every run pays besides training (assumptions, stated in plan.md; tune them here).
STARTUP_S = 300.0  # launch, imports, process-group init, tokenizing the data: ~5 minutes
STORAGE_GB_PER_S_PER_NODE = 2.0  # reading weights / writing checkpoint shards, per node (NVMe or a parallel FS)


def overhead_hours(m: ModelSpec, precision: str, trainable: str, epochs: int, num_nodes: int,
                   strategy: str = "fsdp", startup_s: float | None = None) -> float:
    """Start-up (``startup_s``: the tier's measured figure, else STARTUP_S), loading the bf16 weights (every
    node reads them all) and one checkpoint per epoch (each node writes its shards; LoRA checkpoints are
    the adapters only, negligible)."""
    per_node = STORAGE_GB_PER_S_PER_NODE * 1e9
    load_s = 2 * param_count(m) / per_node
    ckpt = checkpoint_bytes(m, precision, strategy) if trainable == "full" else 0
    save_s = epochs * ckpt / (per_node * max(1, num_nodes))
    return ((STARTUP_S if startup_s is None else startup_s) + load_s + save_s) / SECONDS_PER_HOUR
