"""A prepared GPU check (never used by tests) for MoE experts on the executor's bf16-mixed path (executor/moe.py).

A small Mixtral (random weights, built from a config: nothing downloaded) loaded in fp32 as train.setup_model
loads it for bf16-mixed, one training step under autocast(bf16) as accelerate runs it, twice: with
transformers' own grouped_mm experts (the input goes in as the fp32 weight's dtype) and with the executor's
experts implementation (input and expert weights cast to bf16). Prints per run the dtypes grouped_mm saw,
the step time and torch.cuda.max_memory_allocated, and the fake-tensor trace of the executor's path
(executor/memtrace.py) beside the measured peak.

    python benchmarks/gpu_check_moe.py                  # CUDA (about a minute on one H100/H200)
    python benchmarks/gpu_check_moe.py --device cpu     # the same code path on CPU autocast (no timing claim)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=2048)
    args = p.parse_args(argv)
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoModelForCausalLM, MixtralConfig

    from advisor.specs import ModelSpec
    from executor.memtrace import trace
    from executor.moe import use_autocast_experts

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("gpu_check_moe: no CUDA device (use --device cpu to exercise the code path)", file=sys.stderr)
        return 2
    h, f, heads, kv, vocab, experts, topk = 1024, 3584, 16, 4, 32000, 8, 2
    cfg = MixtralConfig(hidden_size=h, intermediate_size=f, num_hidden_layers=args.layers, num_attention_heads=heads,
                        num_key_value_heads=kv, vocab_size=vocab, num_local_experts=experts, num_experts_per_tok=topk,
                        use_cache=False, max_position_embeddings=max(4096, args.seq_len))

    class Dtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: set = set()

        def __torch_dispatch__(self, func, types, a=(), kw=None):
            if func.overloadpacket is torch.ops.aten._grouped_mm:
                self.seen.add((str(a[0].dtype), str(a[1].dtype)))
            return func(*a, **(kw or {}))

    ids = torch.randint(0, vocab, (1, args.seq_len), device=dev)
    for name in ("transformers grouped_mm", "executor/moe.py"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).to(dev)
        if name == "executor/moe.py":
            use_autocast_experts(model)
        model.train()
        for step in range(3):  # the first steps warm up kernels and the allocator; the last one is timed
            if dev == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            with Dtypes() as d:
                with torch.autocast(dev, dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
            if dev == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else float("nan")
        n = sum(p.numel() for p in model.parameters())
        transient = peak - 8 * n / 2**30  # fp32 weights + fp32 gradients: the rest is activations, logits, copies
        print(f"{name:26s} grouped_mm dtypes {sorted(d.seen)}  step {dt * 1000:.0f} ms  max_memory_allocated "
              f"{peak:.2f} GiB (beyond weights + gradients: {transient:.2f})  loss {loss.item():.4f}", flush=True)
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
    spec = ModelSpec(name="mixtral-check", family="mixtral", hidden_size=h, num_layers=args.layers, num_heads=heads,
                     num_kv_heads=kv, ffn_size=f, ffn_kind="gated", vocab_size=vocab, max_context=max(4096, args.seq_len),
                     num_experts=experts, experts_per_token=topk)
    # forward + backward without an optimizer: the trace's forward/backward phases (its model states include
    # Adam's moments, which this check does not create)
    r = trace(spec, precision="bf16-mixed", strategy="single", seq_len=args.seq_len, activation_checkpointing=False,
              depth=None)
    print(f"fake-tensor trace (executor's path): transient {r.transient_max / 2**30:.2f} GiB, model states "
          f"{r.model_states_max / 2**30:.2f} GiB (incl. Adam), peak {r.peak / 2**30:.2f} GiB at the {r.peak_phase}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
