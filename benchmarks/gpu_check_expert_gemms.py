"""A prepared GPU check (never used by tests): bf16 expert GEMMs at the per-GPU shapes of the published MoE rows,
measured against what the estimator prices for them.

The throughput benchmark's one row beyond 35% (benchmarks/published_throughput.py: Megatron MoE Model Zoo,
Qwen3-235B-A22B on 256 H100, TP 4 / EP 8, +45%) differs from the rows the estimate meets (TP 2 / EP 32 at -3%, the
same TP 4 / EP 8 layout at 16k tokens at -1%) in the size of each expert's GEMMs: its busiest GPU runs 16 local
experts of ~780 tokens each (TP 2 / EP 32: 4 experts of ~6,250). The estimator prices a GEMM by a roofline of its
arithmetic intensity (advisor/throughput.py gemm_shape_factor), which calls all of these compute-bound; tile and
wave quantization (NVIDIA, "Matrix Multiplication Background User's Guide", DU-09799-001 section 3: a GEMM's
output tiles run in waves of one tile per SM, so a GEMM of few tiles leaves SMs idle) would not. This check
measures it: for each row's shape, one MoE layer's routed-expert GEMMs on one GPU, as Transformer Engine's BF16
GroupedLinear issues them (one cuBLAS GEMM per local expert and linear; forward, then the backward's dgrad and
wgrad), timed with CUDA events, beside a large square GEMM (the tier's sustained rate) and the estimator's
shape factor. A measured efficiency well below the factor at the small shapes, and not at the large ones, is the
evidence for pricing quantization; equal ones rule it out.

    python benchmarks/gpu_check_expert_gemms.py                # CUDA: about 20 s on one H100 / H200
    python benchmarks/gpu_check_expert_gemms.py --device cpu   # the same code path, tiny repeat (no timing claim)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# (label, hidden h, expert ffn f, local experts, tokens per local expert on the busiest GPU): the per-GPU shapes of
# the published rows (benchmarks/data/published_rows.yaml), tokens = SP share x EP ranks x top-k / experts x the
# dropless routing's busiest-rank load (1.53, printed by published_throughput.py) where the row is dropless
SHAPES = (
    ("qwen3-235b tp4 ep8 4k dropless (+45%)", 4096, 1536, 16, round(1024 * 8 * 8 / 128 * 1.526)),
    ("qwen3-235b tp2 ep8 4k dropless (+4%)", 4096, 1536, 16, round(2048 * 8 * 8 / 128 * 1.526)),
    ("qwen3-235b tp2 ep32 4k dropless (-3%)", 4096, 1536, 4, round(2048 * 32 * 8 / 128 * 1.526)),
    ("qwen3-235b tp4 ep8 16k forced (-1%)", 4096, 1536, 16, 4096 * 8 * 8 // 128),
    ("gpt-oss-120b h100 ep8 mbs1 (+27%)", 2880, 2880, 16, 4096 * 8 * 4 // 128),
    ("mixtral-8x22b tp2 ep8 (+1%)", 6144, 16384, 1, 2048 * 8 * 2 // 8),
)


def expert_gemms(h: int, f: int, m: int) -> list[tuple[int, int, int]]:
    """(rows, inner, cols) of one gated expert's GEMMs in a training step: fc1 (h -> 2f) and fc2 (f -> h) forward,
    each linear's dgrad (rows x cols -> rows x inner) and wgrad (inner x rows -> inner x cols)."""
    fwd = [(m, h, 2 * f), (m, f, h)]
    bwd = []
    for rows, inner, cols in fwd:
        bwd += [(rows, cols, inner), (inner, rows, cols)]
    return fwd + bwd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    import torch

    from advisor.catalog import load_catalog
    from advisor.throughput import _ridge_flops_per_byte, gemm_shape_factor

    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("gpu_check_expert_gemms: no CUDA device (use --device cpu to exercise the code path)", file=sys.stderr)
        return 2
    cuda = dev == "cuda"
    repeat = args.repeat if cuda else 1
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    tier = load_catalog().gpu("h200" if "H200" in name else "b200" if "B200" in name else "h100-sxm")
    ridge = _ridge_flops_per_byte(tier)
    dtype = torch.bfloat16

    def timed(shapes: list[tuple[int, int, int]]) -> float:
        """Seconds for the GEMMs in order on one stream (the median of `repeat` timings)."""
        mats = [(torch.randn(r, k, device=dev, dtype=dtype), torch.randn(k, c, device=dev, dtype=dtype))
                for r, k, c in shapes]
        for a, b in mats:  # warm-up: cuBLAS picks and caches its kernels
            a @ b
        times = []
        for _ in range(repeat):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for a, b in mats:
                    a @ b
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                import time

                t0 = time.perf_counter()
                for a, b in mats:
                    a @ b
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    big = 8192 if cuda else 256
    big_s = timed([(big, big, big)] * 4)
    big_rate = 4 * 2 * big**3 / big_s
    print(f"{name}: large square GEMM ({big}^3) {big_rate / 1e12:,.0f} TFLOP/s sustained "
          f"({big_rate / (tier.peak_bf16_dense_tflops * 1e12):.2f} of the {tier.id} tier's dense peak); "
          f"estimator shape factor there {gemm_shape_factor(big, big, big, ridge):.3f}")
    print(f"{'shape':42s} {'experts':>7s} {'tokens/expert':>13s} {'TFLOP/s':>8s} {'measured/large':>14s} "
          f"{'estimator factor':>16s}")
    for label, h, f, experts, m in SHAPES:
        if not cuda:  # the code path only: small stand-ins
            h, f, m = max(8, h // 64), max(8, f // 64), max(8, m // 64)
        shapes = expert_gemms(h, f, m) * experts
        flops = sum(2 * r * k * c for r, k, c in shapes)
        s = timed(shapes)
        # the estimator's price of the same GEMMs at its efficiency 1: flops / (peak x shape factor), summed
        priced_rel = flops / sum(2 * r * k * c / gemm_shape_factor(r, k, c, ridge) for r, k, c in shapes)
        rate = flops / s
        print(f"{label:42s} {experts:7d} {m:13,d} {rate / 1e12:8,.0f} {rate / big_rate:14.2f} "
              f"{priced_rel / gemm_shape_factor(big, big, big, ridge):16.2f}")
    print("measured/large: this shape's rate over the large GEMM's; estimator factor: the same ratio as the estimator "
          "prices it. Where measured/large is well below the factor, the estimator over-prices the shape's speed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
