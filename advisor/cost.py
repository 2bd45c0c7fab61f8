"""GPU-hours, dollars and checkpoint disk."""

from __future__ import annotations

from advisor.architecture import param_count
from advisor.specs import GpuSpec, ModelSpec
from advisor.units import SECONDS_PER_HOUR


def checkpoint_bytes(m: ModelSpec, precision: str = "bf16-mixed") -> int:
    """One resumable checkpoint: bf16 weights (2 B/param) + optimizer states (fp32 master and Adam
    moments, 12 B/param, for bf16-mixed; bf16 moments, 4 B/param, for bf16-pure)."""
    optim = 12 if precision == "bf16-mixed" else 4
    return (2 + optim) * param_count(m)


def run_hours(tokens_total: int, tokens_per_s_per_gpu: float, num_gpus: int) -> float:
    """Wall-clock hours to train tokens_total at the estimated throughput."""
    if tokens_per_s_per_gpu <= 0:
        return float("inf")
    return tokens_total / (tokens_per_s_per_gpu * num_gpus) / SECONDS_PER_HOUR


def gpu_hours(hours: float, num_gpus: int) -> float:
    return hours * num_gpus


def cost_usd(hours: float, num_gpus: int, gpu: GpuSpec) -> float:
    """On-demand dollars: GPU-hours x the catalog's USD per GPU-hour."""
    return gpu_hours(hours, num_gpus) * gpu.usd_per_gpu_hour


# Fixed time every run pays besides training (assumptions, stated in plan.md; tune them here).
STARTUP_S = 300.0  # launch, imports, process-group init, tokenizing the data: ~5 minutes
STORAGE_GB_PER_S_PER_NODE = 2.0  # reading weights / writing checkpoint shards, per node (NVMe or a parallel FS)


def overhead_hours(m: ModelSpec, precision: str, trainable: str, epochs: int, num_nodes: int) -> float:
    """Start-up, loading the bf16 weights (every node reads them all) and one checkpoint per epoch
    (each node writes its shards; LoRA checkpoints are the adapters only, negligible)."""
    per_node = STORAGE_GB_PER_S_PER_NODE * 1e9
    load_s = 2 * param_count(m) / per_node
    ckpt = checkpoint_bytes(m, precision) if trainable == "full" else 0
    save_s = epochs * ckpt / (per_node * max(1, num_nodes))
    return (STARTUP_S + load_s + save_s) / SECONDS_PER_HOUR
