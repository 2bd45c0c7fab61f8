"""GPU-hours, dollars and checkpoint disk."""

from __future__ import annotations

from advisor.architecture import param_count
from advisor.models import GpuSpec, ModelSpec
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
