"""`sftplan catalog --measure cpu`: this host's figures for the catalog's ``cpu`` tier. Takes seconds.

1. Matmul throughput for the dtypes the executor uses on a CPU. A run without an accelerator trains in
   float32 (train.py turns bf16 on only where a GPU supports it), so float32 is the figure the tier keeps
   as its peak; bfloat16 is printed beside it. Square ``torch.mm`` of a few sizes on all of this process's
   threads, the best of many short repeats after a warm-up (other jobs on the cores only ever make a
   repeat slower, so the best one is the machine's): TFLOPS = 2 n^3 / seconds.
2. The fixed time of a training step (advisor/step_overhead.py): transformers' Trainer, as the executor
   runs it (logging every step, gradient clipping, torch AdamW), on a tiny Llama, 4 micro-batches a step,
   at a small and a larger micro-batch; a callback stamps every micro-batch's end. Step time = fixed per
   step + accumulation x (fixed per micro-batch + FLOPs / rate): a middle micro-batch of a step is one
   micro-batch alone, the first and last add the step's own work (logging; optimizer, clipping,
   scheduler); the two shapes' micro-batches give the tiny model's rate, and with it the fixed part of a
   micro-batch. Each interval is the best of several (the same reason as above); with one torch thread
   (OMP_NUM_THREADS=1, how runs on a shared host should train: see benchmarks/calibration_loop.py) the
   intervals are the process's CPU time, which other jobs on the cores do not stretch.
3. The host runtime (the catalog's ``host_runtime_gib``, advisor/memory_overheads.py): the peak RSS of a fresh
   Python process after it imports what the executor imports for a run (RUNTIME_IMPORTS: torch,
   transformers' Trainer and model classes, peft, accelerate, datasets, and the executor's own modules),
   before any tensor is made. A subprocess, so what this measuring process has loaded does not count. On a
   CPU run the measured peak is the process RSS: this is the part of it that no tensor shows.
The load average before and after is part of the answer: a loaded machine measures slow.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

SIZES = (512, 1024, 2048)
REPEATS = 12
# A size whose warm-up multiply takes longer than this is the last one tried: the next (2x n, 8x the FLOPs) would
# take 8x as long, and a dtype that slow has no hardware path here (bfloat16 on an AVX2-only core: ~1.4 GFLOP/s,
# 13 s per 2048 multiply, seen 2026-12-02), where the rate does not grow with n
MAX_MULTIPLY_S = 0.5
# (micro-batch, sequence length, accumulation) of the overhead measurement; steps timed per shape
SHAPES = ((1, 16, 4), (8, 128, 4))
STEPS = 8
WARMUP_STEPS = 2


def matmul_tflops(dtype_name: str, sizes: tuple[int, ...] = SIZES, repeats: int = REPEATS) -> float:
    """Best sustained TFLOPS of ``torch.mm`` in ``dtype_name`` ('float32' or 'bfloat16') over ``sizes``."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        t0 = time.perf_counter()
        torch.mm(a, b)  # warm-up
        warm_s = time.perf_counter() - t0
        for _ in range(repeats if n <= 1024 else max(3, repeats // 3)):
            t0 = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t0
            best = max(best, 2 * n**3 / dt / 1e12)
            if dt > MAX_MULTIPLY_S:  # the best of a few slow repeats is as good as of many
                break
        if warm_s > MAX_MULTIPLY_S:
            break
    return best


def _best_intervals_s(model, micro: int, seq: int, accum: int, workdir: str) -> tuple[float, float, float]:
    """Trainer on ``model`` at this shape: the fastest (first, middle, last) micro-batch interval of a step,
    over STEPS steps after the warm-up. A middle one is a micro-batch alone (data, forward, backward);
    the first adds the previous step's logging, the last the optimizer step, clipping and scheduler."""
    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback, TrainingArguments

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks: list[tuple[str, float]] = []

        def on_substep_end(self, args, state, control, **kwargs):
            self.marks.append(("micro", now()))

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(("step", now()))

    # one thread: the process's CPU time is the work itself, whatever else runs on the cores
    now = time.process_time if torch.get_num_threads() == 1 else time.perf_counter

    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": ids, "labels": ids} for ids in
            torch.randint(0, model.config.vocab_size, ((STEPS + WARMUP_STEPS + 1) * micro * accum, seq), generator=g)]
    args = TrainingArguments(output_dir=workdir, per_device_train_batch_size=micro, gradient_accumulation_steps=accum,
                             max_steps=STEPS + WARMUP_STEPS + 1, learning_rate=1e-3, logging_steps=1,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, max_grad_norm=1.0, optim="adamw_torch")
    clock = Clock()
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[clock])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    trainer.train()
    first, middle, last = [], [], []
    ends = [i for i, (kind, _) in enumerate(clock.marks) if kind == "step"]
    for a, b in zip(ends[WARMUP_STEPS:], ends[WARMUP_STEPS + 1:]):  # one step: marks a (previous end) .. b
        times = [t for _, t in clock.marks[a:b + 1]]
        gaps = [y - x for x, y in zip(times, times[1:])]
        if len(gaps) == accum:
            first.append(gaps[0])
            middle.extend(gaps[1:-1])
            last.append(gaps[-1])
    return min(first), min(middle), min(last)


def step_overheads() -> dict:
    """Fixed seconds per optimizer step and per micro-batch of Trainer on this host, and the tiny model's
    FLOP rate (advisor/step_overhead.py's CPU terms)."""
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from executor.tiny import MODEL_SHAPE

    torch.manual_seed(0)
    cfg = LlamaConfig(**MODEL_SHAPE, vocab_size=320)
    model = LlamaForCausalLM(cfg)
    params = sum(p.numel() for p in model.parameters())

    def flops(micro: int, seq: int) -> float:  # 6N per token + attention 12 L h s (advisor/throughput.py's count)
        return micro * seq * (6 * params + 12 * cfg.num_hidden_layers * cfg.hidden_size * seq)

    with tempfile.TemporaryDirectory(prefix="sftplan-measure-") as tmp:
        (m1, s1, a1), (m2, s2, a2) = SHAPES
        f1, mid1, l1 = _best_intervals_s(model, m1, s1, a1, tmp)
        _, mid2, _ = _best_intervals_s(model, m2, s2, a2, tmp)
    per_step = max(0.0, (f1 - mid1) + (l1 - mid1))  # logging before, optimizer after: beyond a micro-batch
    rate = (flops(m2, s2) - flops(m1, s1)) / max(mid2 - mid1, 1e-9)  # the tiny model's FLOP/s
    per_micro = max(0.0, mid1 - flops(m1, s1) / rate)
    return {"step_overhead_s": round(per_step, 4), "micro_batch_overhead_s": round(per_micro, 4),
            "tiny_model_tflops": round(rate / 1e12, 5),
            "micro_batch_s": {f"micro {m1} x seq {s1}": round(mid1, 4), f"micro {m2} x seq {s2}": round(mid2, 4)}}


# What a training process has imported before its first tensor (executor/train.py's path, lazily loaded there)
# (transformers loads lazily: the modules of the classes a run uses, Trainer, TrainingArguments, Auto*)
RUNTIME_IMPORTS = ("torch", "transformers", "transformers.trainer", "transformers.training_args",
                   "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
                   "transformers.models.llama.modeling_llama", "peft", "accelerate", "datasets",
                   "executor.train", "executor.data", "executor.lora", "executor.translate", "executor.train_callbacks",
                   "executor.oom_guard", "executor.evalgate", "executor.lifecycle", "executor.integrity")
# VmHWM (this process's own peak RSS) where /proc has it: Linux carries a parent's high-water mark into ru_maxrss
# across fork + exec, so a child of a process that has trained reads the parent's peak there (seen: 0.52 vs 0.45 GiB)
_RSS_SCRIPT = """
import importlib, json, resource, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"rss_bytes": rss}))
"""


def host_runtime_rss_bytes(imports: tuple[str, ...] = RUNTIME_IMPORTS) -> int:
    """Peak RSS (bytes: VmHWM, else ru_maxrss) of a fresh interpreter after ``imports``: the runtime a CPU
    run holds before its tensors. The same interpreter and sys.path as this process (the executor's)."""
    return _fresh_runtime(imports)[0]


def host_startup_s(imports: tuple[str, ...] = RUNTIME_IMPORTS, repeats: int = 2) -> float:
    """Wall seconds for a fresh interpreter to start and import what a run imports, best of ``repeats``: the
    start-up a CPU run pays before it trains (the cpu tier's startup_s; GPU tiers keep advisor/cost.py's
    STARTUP_S, which adds process-group init and data tokenizing at scale)."""
    return min(_fresh_runtime(imports)[1] for _ in range(repeats))


def _fresh_runtime(imports: tuple[str, ...]) -> tuple[int, float]:
    import json
    import subprocess
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, *imports], capture_output=True, text=True, env=env,
                         timeout=600, check=True)
    elapsed_s = time.perf_counter() - start
    return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_bytes"]), elapsed_s


@contextmanager
def _stdout_to_stderr():
    """Libraries' log lines (DeepSpeed's accelerator warning, imported by Trainer) go to stderr: stdout
    carries only the answer (`--json`). At the descriptor level: their handlers hold sys.stdout itself."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def measure(overheads: bool = True) -> dict:
    from advisor.units import GIB

    with _stdout_to_stderr():
        import torch

        load_before = os.getloadavg()[0]
        got = {"cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "float32_tflops": round(matmul_tflops("float32"), 4),
               "bfloat16_tflops": round(matmul_tflops("bfloat16"), 4), "torch": torch.__version__}
        if overheads:
            got.update(step_overheads())
        got["host_runtime_gib"] = round(host_runtime_rss_bytes() / GIB, 3)
        got["startup_s"] = round(host_startup_s(), 2)
        got["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return got
