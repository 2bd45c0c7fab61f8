"""The host optimizer rate CPU offload runs at: torch's fused (and foreach) AdamW on CPU, fp32 states.

    .venv/bin/python benchmarks/cpu_adam_rate.py [--threads N] [--params N]

Prints parameters updated per second per thread. advisor/throughput.py's CPU_ADAM_PARAMS_PER_S_PER_CORE
is the fused figure measured with this script on the development machine (1 thread, AMD EPYC,
2026-12-01: 5.3e8 params/s); the estimator multiplies it by the node's physical cores and caps it at
the host memory bandwidth. DeepSpeed's CPUAdam op is not built here (a C++/OpenMP build of minutes on
two shared cores); torch's fused CPU AdamW is the same vectorised single-pass update.
"""

from __future__ import annotations

import argparse
import time


def rate(mode: str, n: int, threads: int, steps: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    p = torch.zeros(n, dtype=torch.float32, requires_grad=True)
    p.grad = torch.randn(n, dtype=torch.float32)
    opt = torch.optim.AdamW([p], lr=1e-4, **{mode: True})
    opt.step()  # allocate the moments
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return n * steps / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--params", type=int, default=20_000_000)
    args = ap.parse_args()
    for mode in ("fused", "foreach"):
        r = rate(mode, args.params, args.threads)
        print(f"torch AdamW {mode:<7} on CPU, {args.threads} thread(s): {r:.3g} params/s ({r / args.threads:.3g} per thread)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
