"""`sftplan catalog --measure cpu`: this host's matmul throughput for the dtypes the executor uses on a CPU.

A run without an accelerator trains in float32 (train.py turns bf16 on only where a GPU supports it), so
float32 is the figure the catalog's ``cpu`` tier keeps as its peak; bfloat16 is printed beside it. The
measurement: square matmuls (``torch.mm``) of a few sizes on all of this process's threads, the best of
several repeats after a warm-up; TFLOPS = 2 n^3 / seconds. Takes a few seconds.
"""

from __future__ import annotations

import os
import time

SIZES = (512, 1024, 2048)
REPEATS = 5


def matmul_tflops(dtype_name: str, sizes: tuple[int, ...] = SIZES, repeats: int = REPEATS) -> float:
    """Best sustained TFLOPS of ``torch.mm`` in ``dtype_name`` ('float32' or 'bfloat16') over ``sizes``."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t0
            best = max(best, 2 * n**3 / dt / 1e12)
    return best


def measure() -> dict:
    import torch

    return {"cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "float32_tflops": round(matmul_tflops("float32"), 4), "bfloat16_tflops": round(matmul_tflops("bfloat16"), 4),
            "torch": torch.__version__}
