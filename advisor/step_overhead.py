"""Fixed time per optimizer step and per micro-batch that the FLOP and byte counts of advisor/throughput.py miss.

A training step also pays for work that does not grow with its tokens: the host dispatching every
operator of the forward and backward (Python, the autograd engine, the kernel launch), the optimizer
step, gradient clipping, the scheduler and the Trainer's bookkeeping and callbacks. Where that work
runs on the same cores as the math (a CPU run) it adds to the step; on a GPU the host launches kernels
asynchronously, so only the part the GPU waits for is exposed.

- ``cpu`` tier: step = step_overhead_s + grad_accum x (micro_batch_overhead_s + compute of a micro-batch);
  both fixed terms are measured on the host by ``sftplan catalog --measure cpu`` (executor/cpu_measure.py:
  Trainer steps of a tiny Llama at two micro-batch shapes and two accumulation counts, least squares on
  time = fixed per step + accumulation x (fixed per micro-batch + FLOPs / rate)) and kept in the catalog entry.
- GPU tiers: a micro-batch cannot finish before the host has launched its kernels. A null kernel's launch
  costs ~3 us on recent hardware and drivers (NVIDIA developer forum, "too much time for kernel launch
  latency", 2022), PyTorch's eager dispatch a few more: LAUNCH_S_GPU = 5 us. A decoder layer's forward +
  backward is ~130 kernels (KERNELS_PER_LAYER: leaf aten operators, views left out, counted with
  torch.profiler on a 2- and a 4-layer Llama, 2026-12-02). Exposed: max(0, launches x 5 us - compute).
  The optimizer step (torch's foreach AdamW, ~12 multi-tensor kernels per parameter chunk) and the
  gradient-norm clip add ~60 launches a step: 0.3 ms. At every shape the planner picks for a billion-
  parameter model these are below 1% of the step; they matter for tiny models and tiny micro-batches.
A catalog entry's own ``step_overhead_s`` / ``micro_batch_overhead_s`` replace the defaults.
Pure: no torch, no printing.
"""

from __future__ import annotations

from advisor.specs import GpuSpec, ModelSpec, TrainConfig

LAUNCH_S_GPU = 5e-6
KERNELS_PER_LAYER = 130  # forward + backward of one decoder layer, eager PyTorch
KERNELS_OUTSIDE_LAYERS = 55  # embedding, final norm, LM head, loss, forward + backward
OPTIMIZER_STEP_LAUNCHES = 60  # foreach AdamW + clip_grad_norm_ per optimizer step
# A cpu entry without measured figures (run `sftplan catalog --measure cpu`): this host's, 2026-12-02
CPU_DEFAULT_STEP_OVERHEAD_S = 0.0017
CPU_DEFAULT_MICRO_BATCH_OVERHEAD_S = 0.0017


def micro_batch_launch_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> float:
    """Host time to launch one micro-batch's kernels on a GPU (its pipeline stage's layers)."""
    return (KERNELS_PER_LAYER * m.num_layers / max(1, cfg.pp) + KERNELS_OUTSIDE_LAYERS) * LAUNCH_S_GPU


def fixed_step_overhead_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, compute_per_micro_batch_s: float) -> float:
    """Seconds a step spends beyond its micro-batches' compute and communication: what does not shrink
    with fewer tokens. ``compute_per_micro_batch_s``: the micro-batch time advisor/throughput.py found."""
    if gpu.vendor == "cpu":
        per_step = CPU_DEFAULT_STEP_OVERHEAD_S if gpu.step_overhead_s is None else gpu.step_overhead_s
        per_micro = CPU_DEFAULT_MICRO_BATCH_OVERHEAD_S if gpu.micro_batch_overhead_s is None else gpu.micro_batch_overhead_s
        return per_step + cfg.grad_accum * per_micro
    per_step = OPTIMIZER_STEP_LAUNCHES * LAUNCH_S_GPU if gpu.step_overhead_s is None else gpu.step_overhead_s
    if gpu.micro_batch_overhead_s is None:  # asynchronous launches: only what the GPU waits for
        per_micro = max(0.0, micro_batch_launch_s(m, gpu, cfg) - compute_per_micro_batch_s)
    else:
        per_micro = gpu.micro_batch_overhead_s
    return per_step + cfg.grad_accum * per_micro
