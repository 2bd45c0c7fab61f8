"""The OOM guard of every run: measured peak memory beside the plan's estimate, and a clean end on out-of-memory.

- ``memory_check_callback()``: after the first ``plan.request.memory_check_steps`` optimizer steps (default 3)
  every rank writes RUN_DIR/memory/rank-<r>.json with ``torch.cuda.max_memory_allocated`` and
  ``max_memory_reserved`` beside the plan's estimate; rank 0 prints one progress line. A measured peak
  over the estimate by more than the plan's ``memory_headroom`` prints a warning naming the likely
  component (the largest transient one of the plan's breakdown: activations scale with the micro-batch).
  Without an accelerator there is no device memory to measure: the file says so and nothing is compared.
- ``guard(run_dir, plan, trainer)``: a context manager around ``trainer.train()``. A CUDA out-of-memory
  (``torch.OutOfMemoryError``, or a RuntimeError saying "out of memory") at any step ends the run with
  one line on stderr (the step, the plan's estimate, the measured peak so far, the nearest configuration
  the planner says fits) and RUN_DIR/oom.json; train.py exits with code 3 and `sftplan run` records
  status "oom". Checkpoints are not touched: the last complete one stays the resume point.
- ``allocator_defaults()``: train.py turns on the caching allocator's expandable segments unless the user
  set PYTORCH_(CUDA_)ALLOC_CONF: the estimate's fragmentation figure assumes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

OOM_EXIT_CODE = 3
OOM_FILE = "oom.json"
MEMORY_DIR = "memory"
GIB = 2**30


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _atomic_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


ALLOC_CONF_VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_HIP_ALLOC_CONF")
EXPANDABLE = "expandable_segments:True"


def allocator_defaults(environ=os.environ) -> str:
    """Expandable segments for PyTorch's caching allocator unless the user configured it: the estimate's
    fragmentation figure assumes them (data/memory_overheads.yaml frag-expandable; the default allocator
    reserved +51% in torchtune#1185). Call before the first CUDA allocation (the allocator reads the
    variable once). Returns the line train.py logs."""
    for name in ALLOC_CONF_VARS:
        if environ.get(name):
            return f"allocator: {name}={environ[name]} (yours; the estimate assumes {EXPANDABLE})"
    environ["PYTORCH_CUDA_ALLOC_CONF"] = EXPANDABLE
    return f"allocator: PYTORCH_CUDA_ALLOC_CONF={EXPANDABLE} (the estimate's fragmentation figure assumes it)"


def device_peak() -> dict | None:
    """{"max_allocated_bytes", "max_reserved_bytes"} of this rank's accelerator, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {"max_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "max_reserved_bytes": int(torch.cuda.max_memory_reserved())}


def estimate_bytes(plan) -> int:
    return int(round(plan.estimate.memory_per_gpu_gib * GIB)) if plan.estimate else 0


def likely_component(plan) -> str:
    """The transient component most likely to be off: the largest of activations, logits, gathered layer."""
    breakdown = (plan.estimate.memory_breakdown_gib if plan.estimate else {}) or {}
    parts = {k: breakdown.get(k, 0.0) for k in ("activations", "logits", "gathered_layer")}
    name, gib = max(parts.items(), key=lambda kv: kv[1])
    why = {"activations": "they scale with micro-batch x sequence length",
           "logits": "they scale with micro-batch x sequence length x vocabulary",
           "gathered_layer": "FSDP/ZeRO-3 gather a whole layer (and the embedding) unsharded"}[name]
    return f"{name.replace('_', ' ')} ({gib:.1f} GiB planned; {why})"


# Components of the estimate outside what each counter holds (advisor/memory_overheads.py): the CUDA context
# and NCCL's buffers are not from PyTorch's allocator; its reserve (fragmentation) is in reserved only.
# (host_runtime, cpu tier only, is the process RSS alone.)
NOT_IN_RESERVED = ("cuda_context", "nccl_buffers", "host_runtime", "overhead")  # "overhead": plans before the split
NOT_IN_ALLOCATED = NOT_IN_RESERVED + ("fragmentation",)


def estimate_at_levels(plan) -> tuple[int, int]:
    """(allocated, reserved) levels of the plan's estimate: what max_memory_allocated and
    max_memory_reserved should stay under."""
    total = estimate_bytes(plan)
    breakdown = (plan.estimate.memory_breakdown_gib if plan.estimate else {}) or {}

    def without(keys):
        return max(0, total - int(round(sum(float(breakdown.get(k, 0.0)) for k in keys) * GIB)))

    return without(NOT_IN_ALLOCATED), without(NOT_IN_RESERVED)


def check(plan, measured: dict | None, step: int, rank: int) -> dict:
    """The rank's memory record: measured beside planned at the same level (allocated beside the estimate
    without context, NCCL and fragmentation; reserved beside it without context and NCCL), and a warning
    when either is over the margin."""
    est = estimate_bytes(plan)
    est_alloc, est_reserved = estimate_at_levels(plan)
    margin = float(getattr(plan.request, "memory_headroom", 0.10))
    row: dict = {"rank": rank, "step": step, "plan_estimate_bytes": est, "plan_allocated_bytes": est_alloc,
                 "plan_reserved_bytes": est_reserved, "memory_headroom": margin}
    if measured is None:
        row.update(measured=False, note="no accelerator: device memory is not measured on this run")
        return row
    row.update(measured=True, **measured)
    peak, reserved = measured["max_allocated_bytes"], measured.get("max_reserved_bytes", 0)
    row["ratio_to_estimate"] = round(peak / est_alloc, 4) if est_alloc else None
    row["reserved_ratio_to_estimate"] = round(reserved / est_reserved, 4) if est_reserved and reserved else None
    if est_alloc and peak > est_alloc * (1 + margin):
        row["warning"] = (f"rank {rank}: measured peak {peak / GIB:.1f} GiB allocated is over the plan's estimate "
                          f"{est_alloc / GIB:.1f} GiB (tensors and cuBLAS workspaces) by more than the {margin:.0%} "
                          f"margin; likely component: {likely_component(plan)}")
    elif est_reserved and reserved > est_reserved * (1 + margin):
        row["warning"] = (f"rank {rank}: {reserved / GIB:.1f} GiB reserved is over the plan's {est_reserved / GIB:.1f} GiB "
                          f"(tensors + the allocator's reserve) by more than the {margin:.0%} margin, while allocated "
                          f"stays within: fragmentation (check PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)")
    return row


def nearest_fit(plan) -> str:
    """The nearest configuration the estimator says fits on the same GPUs and strategy, with the margin
    the OOM showed missing: its estimate must be at most (1 - memory_headroom) of the one that failed.
    Checkpointing on first, then smaller micro-batches with the global batch kept by more accumulation."""
    try:
        from advisor.architecture import resolve_model
        from advisor.catalog import load_catalog
        from advisor.estimate import estimate
        from advisor.specs import TrainConfig

        rec = plan.recommended
        gpu = load_catalog().gpu(rec.gpu)
        model = resolve_model(plan.request.model)
        dp = max(1, rec.num_gpus // (rec.tp * rec.pp))
        global_seqs = rec.micro_batch_size * rec.grad_accum * dp
        headroom = float(getattr(plan.request, "memory_headroom", 0.10))
        seq = plan.hyperparameters.max_seq_len
        base = estimate_bytes(plan) or None
        limit = (base * (1 - headroom)) if base else None
        options = [] if rec.activation_checkpointing else [(True, rec.micro_batch_size)]
        mb = rec.micro_batch_size // 2
        while mb >= 1:
            options.append((True, mb))
            mb //= 2
        for ac, mb in options:
            ga = max(1, -(-global_seqs // (mb * dp)))
            cfg = TrainConfig(num_gpus=rec.num_gpus, strategy=rec.strategy, precision=rec.precision, seq_len=seq,
                              micro_batch_size=mb, grad_accum=ga, activation_checkpointing=ac, tp=rec.tp, pp=rec.pp,
                              memory_headroom=headroom)
            e = estimate(model, gpu, cfg)
            if e.fits and (limit is None or e.memory_per_gpu_bytes <= limit):
                return (f"activation checkpointing {'on' if ac else 'off'}, micro-batch {mb} x accum {ga}: "
                        f"{e.memory_per_gpu_bytes / GIB:.1f} GiB")
        return (f"none on {rec.num_gpus} x {rec.gpu} with {rec.strategy}; re-plan with more GPUs "
                "(sftplan plan --num-gpus N) or a sharded strategy")
    except Exception as exc:  # noqa: BLE001 - the OOM line must still be printed
        return f"(not re-estimated: {type(exc).__name__}: {exc})"


def is_oom(exc: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def memory_check_callback(run_dir: Path, plan, measure=device_peak):
    from transformers import TrainerCallback

    steps = int(getattr(plan.request, "memory_check_steps", 3))

    class MemoryCheckCallback(TrainerCallback):
        def __init__(self):
            self.done = False
            self.last: dict | None = None

        def on_step_end(self, args, state, control, **kwargs):
            self.last = measure()
            if self.done or state.global_step < steps:
                return
            self.done = True
            row = check(plan, self.last, state.global_step, _rank())
            _atomic_json(run_dir / MEMORY_DIR / f"rank-{_rank()}.json", row)
            if _rank() == 0:
                if row["measured"]:
                    print(f"[sftplan] memory after {state.global_step} steps: rank 0 peak "
                          f"{row['max_allocated_bytes'] / GIB:.1f} GiB allocated, {row['max_reserved_bytes'] / GIB:.1f} GiB "
                          f"reserved; plan {row['plan_allocated_bytes'] / GIB:.1f} GiB allocated, "
                          f"{row['plan_reserved_bytes'] / GIB:.1f} GiB reserved, {row['plan_estimate_bytes'] / GIB:.1f} GiB "
                          f"on the device", flush=True)
                else:
                    print(f"[sftplan] memory after {state.global_step} steps: {row['note']}", flush=True)
            if "warning" in row:
                print(f"[sftplan] warning: {row['warning']}", file=sys.stderr, flush=True)

    return MemoryCheckCallback()


@contextlib.contextmanager
def guard(run_dir: Path, plan, trainer):
    """Turn an out-of-memory inside ``trainer.train()`` into RUN_DIR/oom.json, one line, and SystemExit(3)."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - only an OOM is handled; everything else re-raises
        if not is_oom(exc):
            raise
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0) or 0)
        measured = None
        try:
            measured = device_peak()
        except Exception:  # noqa: BLE001
            measured = None
        est = estimate_bytes(plan)
        peak = f"{measured['max_allocated_bytes'] / GIB:.1f} GiB" if measured else "not measured (no accelerator)"
        nearest = nearest_fit(plan)
        rank = _rank()
        line = (f"out of memory at step {step + 1} (rank {rank}): plan estimate {est / GIB:.1f} GiB per GPU, measured "
                f"peak so far {peak}; nearest configuration the planner says fits: {nearest}")
        data = {"rank": rank, "step": step + 1, "completed_steps": step, "plan_estimate_bytes": est,
                "measured": measured, "nearest_fit": nearest, "message": line}
        with contextlib.suppress(OSError):
            if rank == 0 or not (run_dir / OOM_FILE).exists():
                _atomic_json(run_dir / OOM_FILE, data)
        print(f"sftplan: {line}", file=sys.stderr, flush=True)
        raise SystemExit(OOM_EXIT_CODE) from None


def read_oom(run_dir: Path) -> dict | None:
    """RUN_DIR/oom.json as written by ``guard``, or None."""
    path = Path(run_dir) / OOM_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
