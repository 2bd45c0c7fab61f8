"""Estimator vs published measurements (../shared/reference/measurements.yaml).

Prints, per row, our estimate, the measurement and the relative error, then the median absolute
error for memory rows and for throughput rows. Beside ours: DeepSpeed's
estimate_zero3_model_states_mem_needs (model states only, ZeRO-3 without offload) and llm-analysis
where installed.

Assumptions where a row leaves a setting out (stated, not tuned):
- strategy 'fsdp-full-shard' is our 'fsdp'; precision defaults to bf16-mixed unless the row says.
- litgpt's tinyllama row gives no precision: litgpt's finetune config runs "bf16-true" = pure bf16
  (AdamW moments in bf16) -> bf16-pure; it gives no checkpointing flag: litgpt full finetune does
  not checkpoint by default -> activation_checkpointing false. Its peak is in GB (10^9 bytes).
- torchtune rows say chunked cross-entropy -> loss_chunks 8 (torchtune's CEWithChunkedOutputLoss).
- activation_checkpointing defaults to true when a row does not say (the TrainConfig default).
- grad_accum defaults to 1.

Usage: .venv/bin/python benchmarks/accuracy.py [path/to/measurements.yaml]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.architecture import largest_layer_params, resolve_model  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.estimate import estimate  # noqa: E402
from advisor.models import TrainConfig  # noqa: E402
from advisor.units import GIB  # noqa: E402

# The team's shared reference when it sits beside the checkout, else the copy kept with the tests
# (tests/reference/measurements.yaml, identical while ../shared exists: tests/advisor/test_reference_copies.py).
_SHARED = REPO.parent / "shared" / "reference" / "measurements.yaml"
MEASUREMENTS = _SHARED if _SHARED.is_file() else REPO / "tests" / "reference" / "measurements.yaml"
STRATEGY = {"fsdp-full-shard": "fsdp"}


def load_rows(path: Path = MEASUREMENTS) -> list[dict]:
    return yaml.safe_load(path.read_text())


def row_config(row: dict) -> TrainConfig:
    """The TrainConfig a measurement row describes, with the assumptions stated in the module doc."""
    source = str(row.get("source", ""))
    precision = row.get("precision", "bf16-mixed")
    ac = row.get("activation_checkpointing", True)
    if "litgpt" in source:
        precision = row.get("precision", "bf16-pure")  # litgpt "bf16-true"
        ac = row.get("activation_checkpointing", False)
    loss_chunks = 8 if "torchtune" in source else 1  # torchtune rows: chunked cross-entropy
    return TrainConfig(
        num_gpus=row["num_gpus"], strategy=STRATEGY.get(row["strategy"], row["strategy"]), precision=precision,
        seq_len=row["seq_len"], micro_batch_size=row["micro_batch_size"], grad_accum=row.get("grad_accum", 1),
        activation_checkpointing=ac, loss_chunks=loss_chunks,
        attention="flash",  # the published stacks (llm-foundry, torchtune, litgpt) run flash attention for every family
        memory_headroom=0.0,  # a run that happened fits the GPU; the plan's safety margin is not the question here
    )


# What each source's peak memory is (benchmarks/published_memory.py compares at the same levels): litgpt
# prints torch.cuda.max_memory_allocated; torchtune's table is "Peak Memory Active" (live blocks). Neither
# holds the CUDA context, NCCL buffers or the allocator's reserve, so those are not compared.
NOT_IN_ALLOCATED = ("cuda_context", "nccl_buffers", "fragmentation")


def measured_memory_kind(row: dict) -> str:
    source = str(row.get("source", ""))
    return "allocated" if ("litgpt" in source or "torchtune" in source) else "device"


def estimate_at_level_bytes(est, kind: str) -> int:
    """The estimate at the level a measurement holds (allocated: without the context, NCCL, fragmentation)."""
    if kind == "allocated":
        return est.memory_per_gpu_bytes - sum(getattr(est.memory, k) for k in NOT_IN_ALLOCATED)
    return est.memory_per_gpu_bytes


def measured_memory_gib(measured: dict) -> float | None:
    if "peak_memory_gib" in measured:
        return float(measured["peak_memory_gib"])
    if "peak_memory_gb" in measured:
        return float(measured["peak_memory_gb"]) * 1e9 / GIB
    return None


def compare(row: dict) -> dict:
    """Our estimate for a row and its relative errors (estimate / measured - 1)."""
    model = resolve_model(row["model"])
    gpu = load_catalog().gpu(row["gpu"])
    cfg = row_config(row)
    est = estimate(model, gpu, cfg)
    out = {"id": row["id"], "est": est, "model": model, "gpu": gpu, "cfg": cfg}
    measured = row.get("measured", {})
    mem = measured_memory_gib(measured)
    if mem is not None:
        at = estimate_at_level_bytes(est, measured_memory_kind(row)) / GIB
        out["memory"] = (at, mem, at / mem - 1)
    if "tokens_per_s_per_gpu" in measured:
        m = float(measured["tokens_per_s_per_gpu"])
        out["throughput"] = (est.tokens_per_s_per_gpu, m, est.tokens_per_s_per_gpu / m - 1)
    if "mfu" in measured:
        out["mfu"] = (est.mfu, float(measured["mfu"]), est.mfu / float(measured["mfu"]) - 1)
    return out


def deepspeed_zero3_gib(model, cfg, gpu) -> str:
    """DeepSpeed's model-states estimate (per GPU, ZeRO-3, no offload; it returns cpu, gpu, largest-layer bytes)."""
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
            from advisor.architecture import param_count

            nodes = -(-cfg.num_gpus // gpu.gpus_per_node)
            per_node = min(cfg.num_gpus, gpu.gpus_per_node)
            _cpu, gpu_bytes, _largest = estimate_zero3_model_states_mem_needs(
                param_count(model), largest_layer_params(model), num_gpus_per_node=per_node, num_nodes=nodes,
                cpu_offload=False, cpu_offload_params=False, zero_init=True,
            )
        return f"{gpu_bytes / GIB:.1f} GiB (model states only)"
    except Exception as exc:  # noqa: BLE001 - a reference tool, not ours
        return f"unavailable ({exc.__class__.__name__})"


def llm_analysis_note() -> str:
    try:
        import llm_analysis  # noqa: F401
    except ImportError:
        return "not installed"
    return "installed (not wired: needs its own GPU/model config files)"


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else MEASUREMENTS
    if not path.is_file():
        print(f"{path}: not found")
        return 2
    mem_err, tput_err = [], []
    lla = llm_analysis_note()
    for row in load_rows(path):
        r = compare(row)
        c = r["cfg"]
        print(f"{r['id']}: {row['model']} on {c.num_gpus} x {row['gpu']}, {c.strategy}, {c.precision}, "
              f"seq {c.seq_len} x mb {c.micro_batch_size} x ga {c.grad_accum}, AC {c.activation_checkpointing}, "
              f"loss_chunks {c.loss_chunks}; fits={r['est'].fits}")
        if "memory" in r:
            e, m, err = r["memory"]
            mem_err.append(abs(err))
            print(f"  memory/GPU    est {e:8.2f} GiB  measured {m:8.2f} GiB  error {err:+.1%} "
                  f"({measured_memory_kind(row)}; more rows: benchmarks/published_memory.py)")
        if "throughput" in r:
            e, m, err = r["throughput"]
            tput_err.append(abs(err))
            print(f"  tokens/s/GPU  est {e:8.0f}      measured {m:8.0f}      error {err:+.1%}")
        if "mfu" in r:
            e, m, err = r["mfu"]
            print(f"  MFU           est {e:8.3f}      measured {m:8.3f}      error {err:+.1%}")
        print(f"  DeepSpeed estimate_zero3_model_states_mem_needs: {deepspeed_zero3_gib(r['model'], c, r['gpu'])}")
        print(f"  llm-analysis: {lla}")
    if mem_err:
        print(f"median |error| memory:     {statistics.median(mem_err):.1%} over {len(mem_err)} rows")
    if tput_err:
        print(f"median |error| throughput: {statistics.median(tput_err):.1%} over {len(tput_err)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
