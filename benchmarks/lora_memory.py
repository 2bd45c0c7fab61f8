"""The LoRA / DoRA memory estimate (advisor/memory.py with trainable="lora", advisor/lora_plan.py's adapter
activations) against a traced LoRA step of the real model (executor/memtrace.py trace_lora: peft on fake
tensors, the executor's LoRA path: bf16 frozen base, fp32 adapter, bf16 autocast, AdamW over the adapter).

Per configuration it prints analytic vs traced for the model states (weights + adapter gradients + Adam),
the transient group (activations + logits + loss buffers + temporaries) and the peak (one moment), and the
relative error of each (target: within 10%).

    python benchmarks/lora_memory.py                       # llama-3.1-8b and qwen2.5-7b, single GPU, 2k tokens
    python benchmarks/lora_memory.py --models llama-3.1-8b --shapes 2048x1 --no-dora
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.architecture import resolve_model  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.lora_plan import RANK, TARGET_MODULES, lora_dropout  # noqa: E402
from advisor.memory import memory_breakdown, model_state_bytes, transient_bytes  # noqa: E402
from advisor.specs import TrainConfig  # noqa: E402

GIB = 2**30
TARGET = 0.10


def analytic(spec, gpu, *, seq_len: int, micro_batch_size: int, checkpointing: bool) -> dict[str, int]:
    cfg = TrainConfig(num_gpus=1, strategy="single", precision="bf16-mixed", seq_len=seq_len,
                      micro_batch_size=micro_batch_size, activation_checkpointing=checkpointing, trainable="lora",
                      lora_rank=RANK)
    m = memory_breakdown(spec, gpu, cfg)
    peak = m.weights + m.gradients + m.optimizer + m.activations + m.logits + m.gathered_layer
    return {"model_states": sum(model_state_bytes(spec, cfg)), "transient": transient_bytes(spec, cfg), "peak": peak}


def traced(spec, *, seq_len: int, micro_batch_size: int, checkpointing: bool, dora: bool, depth: int | None):
    from executor.memtrace import trace_lora

    r = trace_lora(spec, rank=RANK, alpha=2 * RANK, dropout=lora_dropout(spec_params(spec)), dora=dora,
                   target_modules=list(TARGET_MODULES.get(spec.family, [])) or "all-linear", seq_len=seq_len,
                   micro_batch_size=micro_batch_size, activation_checkpointing=checkpointing, depth=depth)
    return {"model_states": r.model_states_max, "transient": r.transient_max, "peak": r.peak}, r


def spec_params(spec) -> int:
    from advisor.architecture import param_count

    return param_count(spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="llama-3.1-8b,qwen2.5-7b")
    ap.add_argument("--shapes", default="2048x1,2048x4", help="SEQxMICRO_BATCH, comma-separated")
    ap.add_argument("--checkpointing", choices=("on", "off", "both"), default="both")
    ap.add_argument("--no-dora", action="store_true", help="plain LoRA (the analytic side always assumes DoRA)")
    ap.add_argument("--depth", type=int, default=1, help="traced depths d and 2d, extrapolated (0: full depth)")
    args = ap.parse_args(argv)
    gpu = load_catalog().gpu("h100-sxm")
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    acs = {"on": (True,), "off": (False,), "both": (True, False)}[args.checkpointing]
    worst = 0.0
    print(f"{'model':14} {'seq x mb':>9} {'ckpt':>4} | {'group':12} {'analytic GiB':>12} {'traced GiB':>10} {'error':>7}")
    for name in args.models.split(","):
        spec = resolve_model(name)
        for seq, mb in shapes:
            for ac in acs:
                started = time.time()
                a = analytic(spec, gpu, seq_len=seq, micro_batch_size=mb, checkpointing=ac)
                t, r = traced(spec, seq_len=seq, micro_batch_size=mb, checkpointing=ac, dora=not args.no_dora,
                              depth=args.depth or None)
                for group in ("model_states", "transient", "peak"):
                    err = (a[group] - t[group]) / t[group]
                    if group != "transient":
                        worst = max(worst, abs(err))
                    print(f"{name:14} {seq:>5} x {mb:<2} {'on' if ac else 'off':>4} | {group:12} {a[group] / GIB:12.2f} "
                          f"{t[group] / GIB:10.2f} {err:+7.1%}")
                cats = ", ".join(f"{k} {v / GIB:.2f}" for k, v in sorted(r.peak_by_category.items()))
                print(f"{'':31}| traced peak at {r.peak_phase}: {cats}  ({time.time() - started:.0f} s)")
    print(f"worst peak / model-state error: {worst:.1%} (target within {TARGET:.0%})")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
