"""Time and cost of the deploy suite (lm-evaluation-harness, base and tuned model): forward passes only.

An indicative figure, priced as its own line of the plan; its assumptions are stated here:

- Task sizes and generation settings are lm-evaluation-harness 0.4's task configs: ``mmlu_pro`` is
  12,032 test questions, 5-shot chain-of-thought, generated (``max_gen_toks`` 2048); ``ifeval`` 541
  prompts, 0-shot, generated (``max_gen_toks`` 1280); ``crows_pairs_english`` 1,677 sentence pairs,
  log-likelihood only. Mean prompt and generated lengths are assumptions (a 5-shot CoT prompt
  ~2,000 tokens, ~300 generated tokens per MMLU-Pro answer, ~400 per IFEval answer, 25 tokens per
  CrowS-Pairs sentence), not measurements.
- Prompt tokens cost 2 x active parameters FLOPs each (a forward pass; Kaplan et al. 2020) at the
  tier's catalog MFU. Generated tokens are memory-bound: each decoding step of a batch reads the bf16
  weights once from HBM (``2 x params`` bytes at the tier's HBM bandwidth).
- Each GPU holds one copy when the bf16 weights fit in 80% of its memory (lm-eval's data-parallel
  ``accelerate launch``); a larger model is split over the fewest GPUs that hold it (lm-eval's
  ``parallelize=True``), each group scoring its share of the prompts.
- Tasks without a known size (a local task YAML) are not priced; the plan says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.specs import GpuSpec
from advisor.units import GIB, SECONDS_PER_HOUR, TB, TFLOP


@dataclass(frozen=True)
class TaskWorkload:
    prompts: int
    prompt_tokens: int  # mean per prompt (all choices of a multiple-choice item together)
    generated_tokens: int  # mean per prompt; 0 for log-likelihood tasks


# lm-eval task name -> its workload (see the module docstring for where each number comes from)
TASK_WORKLOADS: dict[str, TaskWorkload] = {
    "mmlu_pro": TaskWorkload(prompts=12_032, prompt_tokens=2_000, generated_tokens=300),
    "ifeval": TaskWorkload(prompts=541, prompt_tokens=60, generated_tokens=400),
    "crows_pairs_english": TaskWorkload(prompts=1_677, prompt_tokens=50, generated_tokens=0),
}
DECODE_BATCH = 32  # prompts decoded together (lm-eval's batch size for generation)
WEIGHTS_FIT_FRACTION = 0.8


@dataclass(frozen=True)
class DeployCost:
    hours: float
    priced_tasks: list[str]
    unpriced_tasks: list[str]


def _gpus_per_copy(params: int, gpu: GpuSpec) -> int:
    return max(1, math.ceil(2 * params / (gpu.hbm_gib * GIB * WEIGHTS_FIT_FRACTION)))


def task_seconds(w: TaskWorkload, *, params: int, active_params: int, gpu: GpuSpec, num_gpus: int,
                 limit: int | None = None) -> float:
    """Seconds to score one model on one task over ``num_gpus`` GPUs of ``gpu``."""
    prompts = min(w.prompts, limit) if limit else w.prompts
    per_copy = _gpus_per_copy(params, gpu)
    copies = max(1, num_gpus // per_copy)
    prefill_flops = prompts * w.prompt_tokens * 2 * active_params
    prefill_s = prefill_flops / (copies * per_copy * gpu.peak_bf16_dense_tflops * TFLOP * gpu.mfu)
    decode_steps = math.ceil(prompts / (DECODE_BATCH * copies)) * w.generated_tokens
    decode_s = decode_steps * 2 * params / (per_copy * gpu.hbm_bandwidth_tb_per_s * TB)
    return prefill_s + decode_s


def deploy_cost(tasks: list[str | None], *, params: int, active_params: int, gpu: GpuSpec, num_gpus: int,
                limit: int | None = None) -> DeployCost:
    """Hours to run ``tasks`` on the base and the tuned model (twice each task)."""
    seconds, priced, unpriced = 0.0, [], []
    for task in tasks:
        if task is None:
            continue
        w = TASK_WORKLOADS.get(task)
        if w is None:
            unpriced.append(task)
            continue
        priced.append(task)
        seconds += 2 * task_seconds(w, params=params, active_params=active_params, gpu=gpu, num_gpus=num_gpus,
                                    limit=limit)
    return DeployCost(hours=seconds / SECONDS_PER_HOUR, priced_tasks=priced, unpriced_tasks=unpriced)
