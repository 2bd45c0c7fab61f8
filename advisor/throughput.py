"""FLOPs per token, compute / communication / offload time, and the MFU a tier reaches.

Sources:
- 6N FLOPs per trained token (Kaplan et al. 2020) on the active parameters (MoE), plus the attention
  term 12 L h s (forward QK^T and AV, x3 for backward), the definition llm-foundry's MFU column uses.
  Activation checkpointing re-runs the forward: hardware does 8N + 16 L h s, MFU counts 6N + 12 L h s.
- MFU: the tier's catalog figure (a 7B-class model, hidden 4096, ~12k tokens per micro-batch, no
  checkpointing), scaled by width ((h / 4096)^0.25: wider GEMMs run closer to peak, as llm-foundry's
  7B -> 30B rows show) and by tokens per micro-batch (T / (T + 1024), normalised at 12,288).
- Communication (ZeRO paper): FSDP / ZeRO-3 move 3 x 2N bytes per micro-step (all-gather in forward
  and backward, reduce-scatter of grads), DDP and ZeRO-2 2 x 2N per optimizer step; ring collectives
  move (n-1)/n of it at the bus bandwidth: a GPU's NVLink inside a node, the node's network across
  nodes (one ring per NIC; see link_bytes_per_s).
  Overlapped with compute: time = max(compute, communication).
- Offload (ZeRO-Offload, Ren et al. 2021): grads to the host and params back over PCIe each optimizer
  step (and params every micro-step with parameter offload), plus the CPU Adam step at an assumed
  1e9 params/s per node, which is not overlapped.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.architecture import active_param_count, lora_trainable_params, param_count
from advisor.memory import data_parallel_size, num_nodes
from advisor.specs import GpuSpec, ModelSpec, TrainConfig
from advisor.units import GB, TFLOP, gbit_per_s_to_bytes_per_s

REF_HIDDEN = 4096
REF_TOKENS = 12288
TOKENS_HALF = 1024
CPU_ADAM_PARAMS_PER_S_PER_NODE = 1e9


def model_flops_per_token(m: ModelSpec, cfg: TrainConfig) -> float:
    """Useful FLOPs per trained token (what MFU counts). LoRA skips the weight gradients: 4N."""
    n = active_param_count(m)
    attn = 12 * m.num_layers * m.hidden_size * cfg.seq_len
    if cfg.trainable == "lora":
        return 4 * n + attn + 6 * lora_trainable_params(m, cfg.lora_rank)
    return 6 * n + attn


def hardware_flops_per_token(m: ModelSpec, cfg: TrainConfig) -> float:
    """What the GPU executes: checkpointing adds one forward (2N + 4 L h s)."""
    extra = 0.0
    if cfg.activation_checkpointing:
        extra = 2 * active_param_count(m) + 4 * m.num_layers * m.hidden_size * cfg.seq_len
    return model_flops_per_token(m, cfg) + extra


def hardware_efficiency(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> float:
    """Fraction of dense peak the GPU sustains on this shape (before communication stalls)."""
    width = min(1.25, max(0.5, (m.hidden_size / REF_HIDDEN) ** 0.25))
    tokens = cfg.micro_batch_size * cfg.seq_len / cfg.tp
    batch = (tokens / (tokens + TOKENS_HALF)) / (REF_TOKENS / (REF_TOKENS + TOKENS_HALF))
    return min(0.85, gpu.mfu * width * batch)


def link_bytes_per_s(gpu: GpuSpec, cfg: TrainConfig) -> float:
    """The bus bandwidth a ring collective reaches: time = (n-1)/n x bytes / this.

    Inside a node that is a GPU's link. Across nodes, NCCL runs one ring per NIC and each ring crosses
    every node boundary once, so a node sends (n-1)/n x bytes over the network in all, whatever its GPU
    count: the bound is the node's whole network bandwidth, not a GPU's share of it (nccl-tests report
    multi-node bus bandwidth close to the node's aggregate NIC rate).
    """
    intra = gpu.intra_node_bandwidth_gb_per_s * GB
    if num_nodes(cfg, gpu) <= 1 or gpu.inter_node_bandwidth_gbit_per_s <= 0:
        return intra  # no fabric: estimate() marks the config not runnable; the time is only indicative
    return min(intra, gbit_per_s_to_bytes_per_s(gpu.inter_node_bandwidth_gbit_per_s))


@dataclass(frozen=True)
class StepTime:
    compute_s: float
    comm_s: float
    offload_s: float
    step_s: float
    tokens_per_step: int
    bottleneck: str


def step_time(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> StepTime:
    """Seconds per optimizer step on every GPU (all micro-batches of the gradient accumulation)."""
    dp = data_parallel_size(cfg)
    tokens_per_gpu_step = cfg.micro_batch_size * cfg.seq_len * cfg.grad_accum
    tokens_per_step = tokens_per_gpu_step * dp
    flops_per_gpu = hardware_flops_per_token(m, cfg) * tokens_per_gpu_step / (cfg.tp * cfg.pp)
    compute = flops_per_gpu / (gpu.peak_bf16_dense_tflops * TFLOP * hardware_efficiency(m, gpu, cfg))
    if cfg.strategy == "megatron" and cfg.pp > 1:  # 1F1B pipeline bubble
        compute *= 1 + (cfg.pp - 1) / max(cfg.grad_accum, 1)

    n = param_count(m)
    sync_bytes = 2 * n if cfg.trainable == "full" else 2 * lora_trainable_params(m, cfg.lora_rank)
    ring = (dp - 1) / dp if dp > 1 else 0.0
    s = cfg.strategy
    if s in ("fsdp", "zero3", "zero3-offload", "zero3-offload-all"):
        gather = 2 * (2 * n) * cfg.grad_accum  # forward + backward all-gathers of bf16 params
        reduce = sync_bytes * cfg.grad_accum
        comm_bytes = (gather + reduce) * ring
    elif s in ("ddp", "zero2"):
        comm_bytes = 2 * sync_bytes * ring
    elif s == "megatron":
        comm_bytes = 2 * sync_bytes / (cfg.tp * cfg.pp) * ring  # data-parallel gradient all-reduce
    else:
        comm_bytes = 0.0
    comm = comm_bytes / link_bytes_per_s(gpu, cfg) if comm_bytes else 0.0
    if s == "megatron" and cfg.tp > 1:
        # tensor parallel, inside a node over NVLink: 4 all-reduces of b s h activations per layer per
        # micro-batch (forward + backward)
        act = cfg.micro_batch_size * cfg.seq_len * m.hidden_size * 2
        tp_bytes = 4 * 2 * act * (m.num_layers / cfg.pp) * cfg.grad_accum * (cfg.tp - 1) / cfg.tp
        comm += tp_bytes / (gpu.intra_node_bandwidth_gb_per_s * GB)

    offload = 0.0
    if s in ("zero3-offload", "zero3-offload-all"):
        pcie = gpu.pcie_bandwidth_gb_per_s * GB
        shard = n / dp if cfg.trainable == "full" else lora_trainable_params(m, cfg.lora_rank) / dp
        traffic = 2 * shard * 2  # bf16 grads down, bf16 params up, once per optimizer step
        if s == "zero3-offload-all":
            traffic += 2 * (2 * n / dp) * cfg.grad_accum
        gpus_here = min(cfg.num_gpus, gpu.gpus_per_node)
        cpu_adam = shard * gpus_here / CPU_ADAM_PARAMS_PER_S_PER_NODE
        offload = traffic / pcie + cpu_adam

    step = max(compute, comm) + offload
    bottleneck = "offload" if offload > max(compute, comm) else ("communication" if comm > compute else "compute")
    return StepTime(compute, comm, offload, step, tokens_per_step, bottleneck)
