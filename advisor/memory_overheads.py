"""GPU memory no traced tensor shows: the CUDA context, cuBLAS workspaces, NCCL buffers and the caching
allocator's fragmentation, per tier and strategy. Pure; bytes out.

Every figure comes from data/memory_overheads.yaml, where each is given with the public source it was
read in (URL and what was measured); the tier table there says which figure a tier uses and what it
borrows when there is no figure of its own. Nothing is fitted to the published peak-memory rows.

- cuda_context: a measured context size (driver state + the kernels CUDA loads lazily), per tier.
- cublas_workspace: PyTorch's default workspace per (cuBLAS handle, stream) (CublasHandlePool.cpp:
  32 MiB from sm90, 8.125 MiB before; 76 MiB hipBLASLt on ROCm) x the handle/stream pairs that run
  matmuls in a step (forward thread, autograd's backward thread).
- nccl_buffers: a measured NCCL footprint per communicator (NVIDIA/nccl#964 A100, #1685 H100) x the
  communicators the strategy uses (none on one GPU). NCCL's memory grows with channels, not ranks, and
  stops growing beyond 2 nodes (NVIDIA/nccl#986), so the figure does not scale with the GPU count.
- fragmentation: reserved but unallocated, a fraction of the allocations that come and go in a step
  (activations, logits, gathered parameters), with the expandable segments the executor turns on.
- host_runtime (cpu tier only, HOST_COMPONENTS): a CPU run's measured peak is the process RSS, most of it
  the Python + torch + transformers + peft runtime before any tensor. The figure is the catalog cpu entry's
  ``host_runtime_gib``, measured by ``sftplan catalog --measure cpu`` (executor/cpu_measure.py: the RSS of a
  fresh process after the executor's run imports); it is in the device level only (RSS), not in allocated
  or reserved. A tier without the figure gets no such line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from advisor.specs import GpuSpec, TrainConfig
from advisor.units import GIB

MIB = 2**20
COMPONENTS = ("cuda_context", "cublas_workspace", "nccl_buffers", "fragmentation")
HOST_COMPONENTS = ("host_runtime",)  # cpu tier: what the process RSS holds beyond the tensors
# What each is allocated through, for comparing with a measured peak (benchmarks/published_memory.py):
# max_memory_allocated holds the cuBLAS workspaces, max_memory_reserved adds fragmentation, the device
# (nvidia-smi) adds the context and NCCL.
IN_ALLOCATED = ("cublas_workspace",)
IN_RESERVED = ("cublas_workspace", "fragmentation")
FRAGMENTATION_FIGURE = "frag-expandable"
DEFAULT_TIER = {"nvidia": "h100-sxm", "amd": "mi300x"}


@dataclass(frozen=True)
class Figure:
    """One published figure: mib (bytes / 2**20) or fraction, what it counts per, and where it was read."""

    id: str
    url: str
    read: str
    mib: float = 0.0
    fraction: float = 0.0
    per: str = ""  # "handle_stream", "communicator" or "" (once per GPU)


@dataclass(frozen=True)
class OverheadTable:
    figures: dict[str, Figure]
    tiers: dict[str, dict[str, str]]
    handle_streams: int


@lru_cache(maxsize=4)
def load(path: str | None = None) -> OverheadTable:
    """data/memory_overheads.yaml (or `path`), checked: every tier names figures that exist."""
    from pathlib import Path

    import yaml

    from advisor.catalog import data_path
    from advisor.errors import UserError

    p = Path(path) if path else data_path("memory_overheads.yaml")
    raw = yaml.safe_load(p.read_text()) or {}
    figures = {}
    for fid, f in (raw.get("figures") or {}).items():
        if not f.get("url") or not f.get("read"):
            raise UserError(f"{p}: figure {fid} needs url and read (where it comes from)")
        figures[fid] = Figure(id=fid, url=str(f["url"]), read=" ".join(str(f["read"]).split()),
                              mib=float(f.get("mib", 0.0)), fraction=float(f.get("fraction", 0.0)),
                              per=str(f.get("per", "")))
    tiers = {str(k): dict(v or {}) for k, v in (raw.get("tiers") or {}).items()}
    for tier, names in tiers.items():
        for comp, fid in names.items():
            if comp in COMPONENTS and fid not in figures:
                raise UserError(f"{p}: tier {tier}: {comp} names unknown figure {fid}")
    if FRAGMENTATION_FIGURE not in figures:
        raise UserError(f"{p}: figure {FRAGMENTATION_FIGURE} is missing")
    return OverheadTable(figures=figures, tiers=tiers, handle_streams=int(raw.get("handle_streams", 2)))


def tier_figures(gpu: GpuSpec, table: OverheadTable | None = None) -> tuple[dict[str, str], str]:
    """(component -> figure id, what is assumed) for a tier; a tier the file does not list borrows its
    vendor's default tier (said in the note)."""
    t = table or load()
    if gpu.id in t.tiers:
        row = t.tiers[gpu.id]
        return {c: row[c] for c in COMPONENTS if c in row}, str(row.get("assumed", ""))
    if gpu.vendor == "cpu":
        return {}, ""
    default = DEFAULT_TIER.get(gpu.vendor, "h100-sxm")
    row = t.tiers.get(default, {})
    return ({c: row[c] for c in COMPONENTS if c in row},
            f"{gpu.id} is not in data/memory_overheads.yaml: the {default} figures")


def communicators(cfg: TrainConfig) -> int:
    """NCCL communicators a strategy uses on each GPU: none on one GPU; the world group for DDP, FSDP and
    ZeRO; Megatron adds one per parallel dimension in use (tensor, pipeline, data)."""
    if cfg.num_gpus <= 1:
        return 0
    if cfg.strategy == "zero3-sp":  # the world group and DeepSpeed's sequence-parallel group (the node's GPUs)
        return 2
    if cfg.strategy != "megatron":
        return 1
    dp = cfg.num_gpus // max(cfg.tp * cfg.pp, 1)
    return max(1, (cfg.tp > 1) + (cfg.pp > 1) + (dp > 1))


def overhead_bytes(gpu: GpuSpec, cfg: TrainConfig, transient_bytes: int,
                   table: OverheadTable | None = None) -> dict[str, int]:
    """Bytes per GPU by component (COMPONENTS order). transient_bytes: activations + logits + gathered
    parameters at the peak moment (what the allocator's slack grows with)."""
    t = table or load()
    ids, _ = tier_figures(gpu, t)
    fig = t.figures
    out = dict.fromkeys(COMPONENTS, 0)
    if "cuda_context" in ids:
        out["cuda_context"] = int(fig[ids["cuda_context"]].mib * MIB)
    if "cublas_workspace" in ids:
        out["cublas_workspace"] = int(fig[ids["cublas_workspace"]].mib * MIB * t.handle_streams)
    if "nccl_buffers" in ids:
        out["nccl_buffers"] = int(fig[ids["nccl_buffers"]].mib * MIB * communicators(cfg))
    if gpu.vendor != "cpu":  # the host allocator keeps no cache of device blocks
        out["fragmentation"] = int(fig[FRAGMENTATION_FIGURE].fraction * transient_bytes)
    if gpu.vendor == "cpu" and gpu.host_runtime_gib:
        out["host_runtime"] = int(round(gpu.host_runtime_gib * GIB))
    return out


def overhead_sources(gpu: GpuSpec, cfg: TrainConfig, table: OverheadTable | None = None) -> dict[str, str]:
    """component -> 'figure-id (URL): how it is counted' for the components that are not zero here."""
    t = table or load()
    ids, assumed = tier_figures(gpu, t)
    out = {}
    for comp in COMPONENTS:
        fid = FRAGMENTATION_FIGURE if comp == "fragmentation" else ids.get(comp)
        if not fid or (comp == "fragmentation" and gpu.vendor == "cpu"):
            continue
        f = t.figures[fid]
        if comp == "cublas_workspace":
            how = f"{f.mib:g} MiB x {t.handle_streams} (handle, stream) pairs"
        elif comp == "nccl_buffers":
            n = communicators(cfg)
            if not n:
                continue
            how = f"{f.mib:g} MiB x {n} communicator{'s' if n > 1 else ''}"
        elif comp == "fragmentation":
            how = f"{f.fraction:.0%} of activations + logits + gathered (expandable segments)"
        else:
            how = f"{f.mib:g} MiB"
        out[comp] = f"{fid} ({f.url}): {how}"
    if gpu.vendor == "cpu" and gpu.host_runtime_gib:
        out["host_runtime"] = (f"cpu tier's host_runtime_gib ({gpu.host_runtime_gib:g} GiB, data/hardware_catalog.yaml): "
                               "RSS of a fresh process after the executor's run imports (`sftplan catalog --measure cpu`)")
    if assumed:
        out["assumed"] = assumed
    return out
