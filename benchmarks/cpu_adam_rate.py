"""The host optimizer rate CPU offload runs at: torch's fused (and foreach) AdamW on CPU, and DeepSpeed's CPUAdam.

    .venv/bin/python benchmarks/cpu_adam_rate.py [--threads N] [--params N] [--dtype fp32|bf16] [--deepspeed]

Prints parameters updated per second per thread. advisor/throughput.py's CPU_ADAM_PARAMS_PER_S_PER_CORE
is the fused figure measured with this script on the development machine (1 thread, AMD EPYC,
2026-12-01: 5.3e8 params/s); the estimator multiplies it by the node's physical cores and caps it at
the host memory bandwidth. --dtype bf16: parameters, gradients and moments in bf16 (torchtune's full-bf16
FSDP2 CPU offload). --deepspeed: DeepSpeed's CPUAdam (adamw_mode, fp32: what the executor's offload
strategies run; its op compiles on first use, ~61 s here, then is cached in ~/.cache/torch_extensions).
Measured 2026-12-02 on the same 2-core machine at load ~2 (the other helpers' jobs), best of 3 x 3 steps
of 20M parameters, 1 thread: torch fused fp32 1.2-1.4e9, bf16 1.2e9, DeepSpeed CPUAdam fp32 1.3-1.5e9;
at load ~6 fused fp32 fell to 4.0e8 and bf16 to 3.2e8 (the 5.3e8 of 2026-12-01 is a contended figure).
"""

from __future__ import annotations

import argparse
import time


def rate(mode: str, n: int, threads: int, steps: int = 5, dtype: str = "fp32") -> float:
    import torch

    torch.set_num_threads(threads)
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    p = torch.nn.Parameter(torch.zeros(n, dtype=dt))
    p.grad = torch.randn(n, dtype=dt)
    if mode == "deepspeed":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        opt = DeepSpeedCPUAdam([p], lr=1e-4, adamw_mode=True)
    else:
        opt = torch.optim.AdamW([p], lr=1e-4, **{mode: True})
    opt.step()  # allocate the moments
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            opt.step()
        best = max(best, n * steps / (time.perf_counter() - t))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", type=int, default=20_000_000)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--deepspeed", action="store_true", help="also DeepSpeed's CPUAdam (fp32; builds its op once)")
    args = ap.parse_args()
    modes = ["fused", "foreach"] + (["deepspeed"] if args.deepspeed else [])
    for mode in modes:
        dtype = "fp32" if mode == "deepspeed" else args.dtype
        r = rate(mode, args.params, args.threads, dtype=dtype)
        name = "DeepSpeed CPUAdam" if mode == "deepspeed" else f"torch AdamW {mode:<7}"
        print(f"{name} on CPU, {dtype}, {args.threads} thread(s): {r:.3g} params/s ({r / args.threads:.3g} per thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
