"""FLOPs per token, compute / communication / offload time, and the efficiency a tier reaches.

Sources:
- 6N FLOPs per trained token (Kaplan et al. 2020) on the active parameters (MoE), plus the attention
  term 12 L h s (forward QK^T and AV, x3 for backward), the definition llm-foundry's MFU column uses.
  Activation checkpointing re-runs the forward: hardware does 8N + 16 L h s, MFU counts 6N + 12 L h s.
- Compute time from each GEMM's real per-GPU shape (Megatron's tensor parallelism, Shoeybi et al.
  2019: column/row-parallel linears narrow the weight to hidden/tp or ffn/tp; every GPU of a TP group
  still sees all T = micro_batch x seq_len tokens). A GEMM of T x k by k x n moves 2(Tk + kn + Tn)
  bytes for 2Tkn FLOPs; against the tier's ridge point (peak FLOP/s / HBM bytes/s, Williams et al.
  2009 roofline) its time is the smooth roofline sqrt(t_flops^2 + t_bytes^2). Wide GEMMs run at the
  tier's sustained GEMM efficiency, narrow ones (TP8 of an 8B model: n = 512) lose a fifth of it.
- Memory-bound work per token and layer that GEMM FLOPs do not count (norms, residual adds, RoPE, the
  MLP activation, flash-attention I/O, the loss over the vocabulary) at the HBM bandwidth: why small
  models and fast-FLOP / slow-HBM tiers (H100 vs A100) reach a lower MFU at the same shape.
- Flash attention at the 12 L h s convention's FLOPs, at 0.75 of the tier's GEMM rate.
- FSDP / ZeRO-3 issue three collectives per layer and micro-batch whose launch / latency / stream syncs
  do not shrink with the batch (FIXED_S_PER_LAYER_PER_MICRO_BATCH): why small micro-batches run slower.
  FSDP x TP (fsdp-tp) runs the same FSDP2 collectives per layer, so it pays them too (Megatron's
  distributed optimizer, which gathers once a step, does not).
- The tier's catalog `mfu` is the MFU measured at one reference shape (a 7B MPT at 2048 x 6 tokens,
  FSDP on one node, no recompute: llm-foundry's table); its sustained GEMM efficiency is the one that
  makes this model reproduce that MFU (`gemm_efficiency`), then every other shape follows from physics.
- Tensor parallel communication per layer and micro-batch (Korthikanti et al. 2022, sequence
  parallel): forward 2 all-gathers + 2 reduce-scatters of T x h bf16 (an all-reduce's bytes), as many
  in backward, 2 more when the forward is recomputed; ring time 2(tp-1)/tp x bytes / (0.7 x NVLink). Plain TP
  exposes it; async TP / Megatron-Core's TP-comm overlap hide part (`tp_overlap`).
- Pipeline bubble (Narayanan et al. 2021): 1F1B idles (p-1)/(m+p-1) of the step, m micro-batches;
  the interleaved schedule with v chunks per GPU divides the bubble by v and crosses v x as many stage
  boundaries ("the amount of communication also increases by v"). Activations cross each stage
  boundary forward and backward. The pipeline runs at its busiest stage's pace: ceil(L / pp) layers,
  the last stage also the LM head + loss (Megatron-Core's even split); pp_layers_off_ends takes layers
  off the first and last stages (Llama 3, arXiv 2407.21783 section 3.3.2: one layer each).
- MoE (Megatron-Core's token dispatcher): a router GEMM (T x h x experts); the token permutation's
  memory traffic per layer and token, permute (read + write k h), with EP the sort / unsort by local
  expert (read + write k h each), unpermute (read k h, write h); the expert-parallel all-to-all exposed
  unless ep_overlap (Megatron-Core hides it only with --overlap-moe-expert-parallel-comm, not with its
  TP-comm overlap); expert gradients synced over the expert-data-parallel group (dp / ep ranks). Expert tensor
  parallel below tp (etp; Megatron-Core MoE parallel folding, arXiv 2504.14960): experts split etp ways, each GPU
  dispatches tokens x etp / tp, the EP group spans ep x etp GPUs, the MoE block's TP collectives leave the tp group.
  Sliding-window layers (gpt-oss: 18 of 36, 128 tokens; config.json) attend to 2 w keys per query in
  the 12 L h s convention. The dropless dispatcher's device-to-host sync per layer forward
  (moe_host_sync): the drained queue's latency, and host-bound launches where the layer's kernels are
  shorter than their launch (NVIDIA "Getting Started with CUDA Graphs": 3.8 us per launch back to back,
  9.6 us with a sync per kernel). At gpt-oss's recipe shapes it is ~6 us per layer: what else fused
  grouped-MLP kernels remove (NVIDIA: +93% for GPT-OSS), beyond the eager epilogue priced below, is not priced
  (docs/SOURCES_BEYOND_GUIDE.md).
  Selective recompute of memory-bound modules (Megatron-Core --recompute-modules layernorm / moe_act):
  their forward traffic once more in backward.
- Megatron-Core kernel paths that move more bytes than the fused kernels above (core_v0.17.0): the eager
  rotary embedding (rope_utils._apply_rotary_pos_emb_bshd, taken when TE's fused RoPE refuses YaRN's mscale
  != 1, e.g. gpt-oss): 12 elements forward + 10 backward per rotated q / k element instead of 2 + 4
  (unfused_rope); the native fused cross entropy (fusions/fused_cross_entropy.py, four torch.compile'd
  functions each materializing fp32 logits): 32 bytes per logit instead of 16; Transformer Engine's Triton
  cross entropy (bf16 logits, gradient written in place): 10 (cross_entropy_impl "native" / "te"); the BF16
  TEGroupedMLP's eager epilogue (transformer/moe/experts.py: fc2's bias added per local expert outside the
  GEMM, the GLU clamp as eager ops before the compiled activation), per routed copy 46 bytes per element of f
  and 28 per element of h, plus what recompute re-runs (eager_expert_epilogue, on gpt-oss's expert_bias / glu_clamp).
  Megatron-Core's DDP with --overlap-grad-reduce / --overlap-param-gather hides the distributed optimizer's
  sync only behind the last micro-batch's backward and the first one's forward (schedules.py: no_sync for
  all but the last micro-batch): dp_overlap_window, per source; the default overlaps it with the whole step.
- Data-parallel traffic (ZeRO paper): FSDP / ZeRO-3 move 3 x 2N bytes per micro-step (all-gather in
  forward and backward, reduce-scatter of grads), DDP and ZeRO-2 2 x 2N per optimizer step, Megatron's
  distributed optimizer a reduce-scatter + all-gather of its 1/(tp pp) shard; ring collectives move
  (n-1)/n of it at the bus bandwidth the topology gives (see group_link_bytes_per_s). Gradients move at
  EngineKernels.grad_reduce_bytes per element: 2 (bf16, the executor's) or 4 (fp32: Megatron-LM's --bf16 default,
  Megatron-Bridge's grad_reduce_in_fp32), parameters always in bf16. Overlapped with
  compute, but not perfectly (NCCL kernels share SMs and HBM): time = max(compute, comm) + 0.2 min(compute, comm).
  FSDP / ZeRO-3 with expert parallel (NeMo AutoModel's MoE parallelizer): the dense part over every data-parallel
  rank, each rank's experts / ep over the dp / ep ranks holding the same experts, nothing when dp / ep == 1
  (_sharded_expert_comm_s).
- Offload (ZeRO-Offload, Ren et al. 2021): gradients go to the host during backward and parameters
  stream in before use (overlapped with compute, bounded by PCIe); the host optimizer step and the upload
  of the updated bf16 parameters run after backward and are not overlapped (ZeRO-Offload's delayed
  parameter update is optional and off by default). Its time depends on the engine (`host_optimizer`):
  "deepspeed" (what the executor's zero3-offload / zero3-offload-all run): DeepSpeed's whole host path
  (gradients into fp32 host buffers, CPUAdam, the updated parameters back) at the rate DeepSpeed runs it,
  DEEPSPEED_OFFLOAD_PARAMS_PER_S_PER_NODE, measured per node on A100 servers with 4 and 8 ranks;
  "torch-fused" (FSDP2's CPUOffloadPolicy with torch's fused AdamW, e.g. torchtune): the fused step
  measured on this machine (benchmarks/cpu_adam_rate.py) per core, times the node's physical cores, capped
  by the host memory bandwidth (~30 bytes per parameter), plus the upload.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from advisor.architecture import active_param_count, expert_param_count, lora_trainable_params, param_count
from advisor.memory import data_parallel_size, num_nodes, ulysses_degree
from advisor.specs import GpuSpec, ModelSpec, TrainConfig
from advisor.step_options import HOST_OPTIMIZERS, EngineKernels, ParallelLayout  # noqa: F401 (HOST_OPTIMIZERS: re-exported)
from advisor.step_overhead import fixed_step_overhead_s
from advisor.units import GB, TFLOP, gbit_per_s_to_bytes_per_s

# Reference shape of the catalog's `mfu` (llm-foundry's MPT-7B row: d_model 4096, 32 layers, 4x GELU
# MLP, vocab 50368, seq 2048 x micro-batch 6, FSDP on 8 GPUs of one node, no activation checkpointing).
REF_MODEL = ModelSpec(name="mpt-7b-reference", family="mpt", source="config.json", hidden_size=4096, num_layers=32,
                      num_heads=32, num_kv_heads=32, ffn_size=16384, ffn_kind="mlp", vocab_size=50368,
                      tied_embeddings=True, max_context=2048)
REF_CONFIG = TrainConfig(num_gpus=8, strategy="fsdp", seq_len=2048, micro_batch_size=6, grad_accum=1,
                         activation_checkpointing=False)
MAX_GEMM_EFFICIENCY = 0.92  # cuBLAS bf16 GEMMs at large shapes: ~85-92% of dense peak (stas00/ml-engineering matmul ceilings)
ATTENTION_RELATIVE_EFFICIENCY = 0.75  # flash-attention fwd+bwd vs a large GEMM on the same tier (FlashAttention-2 paper: 50-73% of A100 peak)
ATTENTION_CAUSAL_FRACTION = 1.0  # causal kernels do half the FLOPs but run at about half the rate of dense ones at these shapes
# Time of causal attention relative to the non-causal FLOP count, per kernel family (EngineKernels.attention_kernel).
# "flash": the FlashAttention kernels behind llm-foundry, torchtitan and HF transformers, at the estimator's
# calibration (ATTENTION_CAUSAL_FRACTION). "te-fused": Transformer Engine's fused attention (cuDNN / FlashAttention-3
# class kernels on Hopper and Blackwell, Megatron-Core's default layer spec) skips the masked tiles at the full tile
# rate: half the non-causal time. Evidence: the Megatron MoE Model Zoo's forced-balance Qwen3-235B long-context rows
# (16k-128k, CP 1-8, benchmarks/published_throughput.py) run -1% to +2% at 0.5, and -25% to -45% (falling with
# length) at 1.0 (docs/SOURCES_BEYOND_GUIDE.md).
CAUSAL_ATTENTION_TIME_FRACTION = {"flash": ATTENTION_CAUSAL_FRACTION, "te-fused": 0.5}
COMM_OVERLAP_EFFICIENCY = 0.8  # of min(compute, data-parallel comm), the part hidden: NCCL kernels share SMs and HBM with compute
HBM_EFFICIENCY = 0.65  # sustained fraction of HBM bandwidth for the unfused-size elementwise kernels of a layer
LINK_EFFICIENCY = 1.0  # data-parallel collectives (hundreds of MB) run at the link's rate
TP_LINK_EFFICIENCY = 0.7  # NCCL all-gather / reduce-scatter of a layer's activations (tens of MB) reach ~70% of NVLink's rate
# FSDP / ZeRO-3 per layer and micro-batch: 3 collectives (all-gather fwd, all-gather + reduce-scatter bwd)
# whose launch, latency and stream syncs do not shrink with the batch (~1 ms each)
FIXED_S_PER_LAYER_PER_MICRO_BATCH = 0.004
# Host launch costs (NVIDIA technical blog "Getting Started with CUDA Graphs", A. Gray 2019: a 2.9 us kernel
# launched back to back takes 3.8 us per kernel, so the stream runs at the host's launch rate; with a
# cudaStreamSynchronize after each launch 9.6 us per kernel: the drained queue costs 9.6 - 3.8 us more; 3.4 us as a
# graph. The three timings checked against a stored transcription of the blog, docs/SOURCES_BEYOND_GUIDE.md).
KERNEL_LAUNCH_S = 3.8e-6
DRAINED_QUEUE_S = 9.6e-6 - 3.8e-6
# Kernels the dropless all-to-all dispatcher launches after its device-to-host sync in one MoE layer's
# forward, besides one GEMM per local expert and linear (Megatron-Core MoEAlltoAllTokenDispatcher: permute,
# all-to-all, sort_chunks_by_idxs; the experts' activation; unsort, all-to-all, unpermute)
MOE_POST_SYNC_KERNELS = 7
# Logits of the LM head, bytes moved per logit besides its GEMMs: bf16 out, an fp32 softmax and its gradient
HEAD_BYTES_PER_LOGIT = 16
# Megatron-Core's native fused cross entropy (megatron/core/fusions/fused_cross_entropy.py, core_v0.17.0; its
# jit_fuser is torch.compile, megatron/core/jit.py): four compiled functions, each materializing its result over
# the fp32 logits: upcast + max (read 2, write 4), subtract the max + exp + sum in place (read 4, write 4), divide
# by the sum in place (read 4, write 4); backward the in-place gradient update, written back into the saved
# softmax, and its bf16 cast (read 4, write 4 + 2)
NATIVE_CE_BYTES_PER_LOGIT = 2 + 4 + 4 + 4 + 4 + 4 + 4 + 4 + 2
# Transformer Engine's cross entropy (transformer_engine/pytorch/triton/cross_entropy.py, v2.14), as Megatron-Core's
# te_parallel_cross_entropy calls it (reduce_loss False: a per-token gradient): online_softmax_kernel reads the bf16
# logits (2), cross_entropy_kernel reads them again and writes the gradient in place (2 + 2); backward
# element_mul_kernel scales it by the per-token gradient (read 2, write 2)
TE_CE_BYTES_PER_LOGIT = 2 + 2 + 2 + 2 + 2
CE_BYTES_PER_LOGIT = {"native": NATIVE_CE_BYTES_PER_LOGIT, "te": TE_CE_BYTES_PER_LOGIT}
# Megatron-Core's eager rotary embedding (megatron/core/models/common/embeddings/rope_utils.py
# _apply_rotary_pos_emb_bshd, core_v0.17.0), bf16 elements moved per element of the rotated q / k:
# forward t * cos (1 + 1), rotate_half's -x2 (0.5 + 0.5) and cat (1 + 1), * sin (1 + 1), the add (2 + 1), the
# final cat (1 + 1); autograd backward: grad * sin (1 + 1), neg (0.5 + 0.5), chunk's cat (1 + 1), grad * cos
# (1 + 1), the two gradients summed (2 + 1). The fused kernel the layer's memory term charges: 2 forward, 4 backward
UNFUSED_ROPE_FWD_ELEMS = 12
UNFUSED_ROPE_BWD_ELEMS = 10
FUSED_ROPE_FWD_ELEMS = 2
PCIE_EFFICIENCY = 0.8  # pinned host<->device copies reach ~80% of the PCIe link
# Host optimizer: torch.optim.AdamW(fused=True) on CPU, fp32 parameter/gradient/moments, one thread of
# this machine's AMD EPYC: 5.3e8 params/s (benchmarks/cpu_adam_rate.py, 2026-12-01).
CPU_ADAM_PARAMS_PER_S_PER_CORE = 5.3e8
CPU_ADAM_BYTES_PER_PARAM = 30  # read/write fp32 param, m, v; read the fp32 grad; write the bf16 copy
# DeepSpeed ZeRO-Offload's host path per node, as DeepSpeed runs it (the difference of step times with and
# without the optimizer offloaded, so the GPU part cancels): DeepSpeed's ZenFlow blog (blogs/deepspeed-zenflow,
# 2025): Llama 2-7B (6.74e9 params) on 4 A100, "each step from 0.5s to over 7s": >= 6.5 s, <= 1.04e9 params/s;
# deepspeedai/DeepSpeed#3901: Falcon-7B (6.92e9) on 8 A100-40GB, ZeRO-3 with parameter offload 6.05 s,
# + optimizer offload 13.70 s: 7.65 s, 0.90e9 params/s. Their mean; the CPUAdam arithmetic alone runs at
# ~1.4e9 params/s per thread (benchmarks/cpu_adam_rate.py --deepspeed): the rest of the path sets the rate.
DEEPSPEED_OFFLOAD_PARAMS_PER_S_PER_NODE = 0.97e9
# Host memory bandwidth of a 2-socket GPU server: 2 sockets x 8 channels x DDR4-3200 (25.6 GB/s per
# channel, JEDEC) = 410 GB/s peak, ~70% of it sustained (STREAM triad): ~290 GB/s.
HOST_MEMORY_BANDWIDTH_GB_PER_S = 290.0
SHARDED_STRATEGIES = ("fsdp", "hsdp", "zero3", "zero3-offload", "zero3-offload-all", "zero3-sp")
# Megatron-Core --tp-comm-overlap with sequence parallel (NeMo's Hopper recipes); transformers' tp_plan
# (fsdp-tp) is plain PyTorch TP: its all-reduces are exposed
DEFAULT_TP_OVERLAP = {"megatron": 0.5, "fsdp-tp": 0.0}


def sustained_hbm_bytes_per_s(gpu: GpuSpec) -> float:
    """The HBM bandwidth a layer's memory-bound kernels sustain: the tier's peak x HBM_EFFICIENCY."""
    return gpu.hbm_bandwidth_tb_per_s * 1e12 * HBM_EFFICIENCY


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


def _ridge_flops_per_byte(gpu: GpuSpec) -> float:
    return gpu.peak_bf16_dense_tflops * TFLOP / (gpu.hbm_bandwidth_tb_per_s * 1e12)


def gemm_shape_factor(tokens: float, k: float, n: float, ridge: float) -> float:
    """Fraction of the tier's sustained GEMM rate a (tokens x k) @ (k x n) bf16 GEMM reaches: the smooth
    roofline 1 / sqrt(1 + (ridge / arithmetic intensity)^2); intensity = FLOPs / bytes moved."""
    intensity = (2 * tokens * k * n) / (2 * (tokens * k + k * n + tokens * n))
    return 1 / math.sqrt(1 + (ridge / intensity) ** 2)


@dataclass(frozen=True)
class _Work:
    """One micro-batch on one GPU: GEMM time at efficiency 1 (seconds x efficiency), memory-bound seconds,
    for one transformer layer (its tp / cp / ep share) and for the LM head + loss (which sits on the last
    pipeline stage). The busiest pipeline stage sets the pace (pipeline_stage_work)."""
    layer_gemm_s: float
    layer_memory_s: float
    head_gemm_s: float
    head_memory_s: float
    moe_fwd_gemm_s: float = 0.0  # one layer's routed-expert GEMMs, forward only (at efficiency 1)
    moe_fwd_memory_s: float = 0.0  # one layer's token permutation + expert activation traffic, forward only


def busiest_stage_layers(num_layers: int, pp: int, layers_off_ends: int = 0) -> tuple[float, float]:
    """(layers on the busiest inner stage, layers on the last stage, which also carries the LM head + loss).

    1F1B runs at the pace of its slowest stage (Narayanan et al. 2021). Megatron-Core splits the layers
    evenly (the last stage also holds the output layer and loss); a stage holds ceil(L / pp) when L does
    not divide. layers_off_ends: transformer layers taken off each of the first and last stages to
    balance the embedding and the output layer (Llama 3, arXiv 2407.21783 section 3.3.2: "we reduce one
    Transformer layer each from the first and the last stages"): the stages then hold (L + 2 off) / pp
    and the last one off fewer."""
    if pp <= 1:
        return float(num_layers), float(num_layers)
    per_stage = math.ceil((num_layers + 2 * layers_off_ends) / pp)
    return float(per_stage), float(max(0, per_stage - layers_off_ends))


_DEFAULT_LAYOUT = ParallelLayout()
_DEFAULT_KERNELS = EngineKernels()
_WORK_CACHE: dict[tuple, _Work] = {}


def _micro_batch_work(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout = _DEFAULT_LAYOUT,
                      kernels: EngineKernels = _DEFAULT_KERNELS) -> _Work:
    """Cached per shape (the planner asks for the same shape at many GPU counts and strategies). What it reads of
    the layout: cp, ep, etp; of the kernels: attention_kernel, moe_routing_imbalance, moe_dispatcher
    (_micro_batch_work_uncached)."""
    key = (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.head_dim, m.ffn_size, m.ffn_kind,
           m.vocab_size, m.num_experts, m.experts_per_token, m.sliding_window, m.sliding_window_layers,
           gpu.peak_bf16_dense_tflops, gpu.hbm_bandwidth_tb_per_s,
           cfg.tp, cfg.pp, cfg.micro_batch_size, cfg.seq_len, cfg.activation_checkpointing, cfg.trainable,
           layout.cp, layout.ep, layout.etp,
           kernels.attention_kernel, kernels.moe_routing_imbalance, kernels.moe_dispatcher)
    work = _WORK_CACHE.get(key)
    if work is None:
        if len(_WORK_CACHE) > 50_000:
            _WORK_CACHE.clear()
        work = _WORK_CACHE[key] = _micro_batch_work_uncached(m, gpu, cfg, layout, kernels)
    return work


def _micro_batch_work_uncached(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout,
                               kernels: EngineKernels) -> _Work:
    """layout.cp > 1 (context parallel): this GPU holds seq_len / cp of each sequence; its queries still attend
    over the whole sequence (ring attention), so attention per local token keeps seq_len.
    layout.ep > 1 (expert parallel): this GPU holds num_experts / ep experts and receives their tokens from the
    ep ranks: the same FLOPs in ep x larger expert GEMMs. layout.etp (expert tensor parallel; None: tp): the
    experts' ffn split etp ways, and each GPU's experts see tokens x etp / tp (its sequence-parallel share, gathered
    over the etp ranks: Megatron-Core core_v0.17.0 MoEAlltoAllTokenDispatcher.dispatch_postprocess); the same FLOPs
    per GPU.
    kernels.attention_kernel: CAUSAL_ATTENTION_TIME_FRACTION's key. kernels.moe_routing_imbalance: the busiest
    expert-parallel rank's routed tokens over the balanced share: its expert GEMMs and permutation / activation
    traffic carry that many tokens. kernels.moe_dispatcher: "deepep" sends a token once per destination rank
    (expert_parallel_copies_per_token) and permutes after the receive. EngineKernels validates both names."""
    cp, ep, etp = layout.cp, layout.ep, layout.etp
    moe_load, moe_dispatcher = kernels.moe_routing_imbalance, kernels.moe_dispatcher
    tp = cfg.tp
    tokens = cfg.micro_batch_size * cfg.seq_len / cp
    peak = gpu.peak_bf16_dense_tflops * TFLOP
    ridge = _ridge_flops_per_byte(gpu)
    h, f = m.hidden_size, m.ffn_size
    q = m.num_heads * m.head_dim_effective
    kv = m.num_kv_heads * m.head_dim_effective
    # forward + backward passes over each GEMM: full training 1 + 2 (dgrad, wgrad), LoRA 1 + 1 (frozen
    # weights: dgrad only); recompute adds a forward. dgrad / wgrad have the same three dims, so one shape.
    passes = (3 if cfg.trainable == "full" else 2) + (1 if cfg.activation_checkpointing else 0)

    def gemm(tok: float, kk: float, nn: float) -> float:
        return 2 * tok * kk * nn / (peak * gemm_shape_factor(tok, kk, nn, ridge))

    layer = gemm(tokens, h, (q + 2 * kv) / tp) + gemm(tokens, q / tp, h)
    moe_fwd_bytes = 0.0
    if m.num_experts > 1:  # balanced routing: each expert sees tokens x top-k / experts (x ep with EP)
        ep = max(1, min(ep, m.num_experts))
        k = m.experts_per_token
        if etp is None or etp == tp:
            e_tokens, e_tp = max(1.0, moe_load * tokens * k / m.num_experts * ep), tp
        else:  # expert tensor parallel below tp: the sequence-parallel share x etp through ffn / etp experts
            e_tokens, e_tp = max(1.0, moe_load * tokens * etp / tp * k / m.num_experts * ep), etp
        n_mats = 2 if m.ffn_kind == "gated" else 1
        moe_fwd_gemm = m.num_experts / ep * (n_mats * gemm(e_tokens, h, f / e_tp) + gemm(e_tokens, f / e_tp, h))
        layer += moe_fwd_gemm
        layer += gemm(tokens, h, m.num_experts)  # router logits
        # token permutation (Megatron-Core MoE token dispatcher): permute gathers top-k copies of each
        # token (read k h, write k h), with expert parallel the received tokens are sorted by local expert
        # and unsorted before the combine (read + write k h each), unpermute reads the k copies and
        # writes their weighted sum (read k h, write h); bf16, forward (backward moves as much again x2).
        # DeepEP (ep > 1) receives r = expert_parallel_copies_per_token copies per token, one per rank: the permute
        # after the receive reads r h and writes k h, the unpermute reads k h and writes r h, and the sender's combine
        # sums the r returned copies (read r h, write h); no sort by local expert.
        if moe_dispatcher == "deepep" and ep > 1:
            r = expert_parallel_copies_per_token(m, ep, moe_dispatcher)
            moe_fwd_bytes = moe_load * 2 * ((3 * r + 2 * k) * h + h) / tp
        else:
            moe_fwd_bytes = moe_load * 2 * (2 * k * h + (4 * k * h if ep > 1 else 0) + k * h + h) / tp
    else:
        moe_fwd_gemm = 0.0
        n_mats = 2 if m.ffn_kind == "gated" else 1
        layer += n_mats * gemm(tokens, h, f / tp) + gemm(tokens, f / tp, h)
    layer_gemm_s = passes * layer
    head_gemm_s = 3 * gemm(tokens, h, m.vocab_size / tp)  # LM head, forward + backward, never recomputed
    # attention core: the 12 L h s convention counts non-causal FLOPs; a full (causal) layer takes
    # CAUSAL_ATTENTION_TIME_FRACTION of their time for the kernel family. A sliding-window layer attends to at
    # most `sliding_window` keys per query (a band, no causal half): 2 w keys of tile work (the band and its
    # diagonal tiles), capped at seq_len, whatever the causal fraction (the kernels skip the tiles outside the band).
    # cuDNN skips the masked tiles (its GPT-OSS benchmark, window 128: ~1/5 of a full causal layer's time per head;
    # docs/SOURCES_BEYOND_GUIDE.md).
    causal = CAUSAL_ATTENTION_TIME_FRACTION[kernels.attention_kernel]
    attn_fwd = 4 * tokens * cfg.seq_len * q / tp
    if m.sliding_window and m.sliding_window_layers:
        banded = min(1.0, 2 * m.sliding_window / cfg.seq_len)
        share = m.sliding_window_layers / m.num_layers
        attn_fwd *= (1 - share) * causal + share * banded
    else:
        attn_fwd *= causal
    attn_passes = 3 + (1 if cfg.activation_checkpointing else 0)
    layer_gemm_s += attn_passes * attn_fwd / (peak * ATTENTION_RELATIVE_EFFICIENCY)
    # memory-bound bytes per token and layer, forward (bf16): 2 norms (read + write h), 2 residual adds
    # (2 reads + 1 write of h), RoPE on q and k, the MLP activation (gated: read 2f, write f; GELU: read
    # f, write f), flash-attention I/O (read q, k, v; write the output). Sequence parallel splits the
    # norms and residuals over tp; the rest is already split by the column-parallel layout.
    act = (3 * m.experts_per_token * f) if m.ffn_kind == "gated" else (2 * m.experts_per_token * f)
    if m.num_experts > 1:
        act *= moe_load  # the busiest rank's experts activate moe_load x the balanced share
    fwd_bytes = 2 * (2 * 2 * h + 2 * 3 * h) / tp + 2 * (2 * (q + kv) + act + 2 * q + 2 * kv) / tp + moe_fwd_bytes
    mem_passes = 3 + (1 if cfg.activation_checkpointing else 0)  # backward ~ 2x the forward's traffic
    hbm = sustained_hbm_bytes_per_s(gpu)
    layer_mem_s = mem_passes * fwd_bytes * tokens / hbm
    head_mem_s = HEAD_BYTES_PER_LOGIT * tokens * m.vocab_size / tp / hbm
    moe_act_bytes = 2 * act / tp if m.num_experts > 1 else 0.0
    return _Work(layer_gemm_s=layer_gemm_s, layer_memory_s=layer_mem_s, head_gemm_s=head_gemm_s,
                 head_memory_s=head_mem_s, moe_fwd_gemm_s=moe_fwd_gemm,
                 moe_fwd_memory_s=(moe_fwd_bytes + moe_act_bytes) * tokens / hbm)


def moe_host_sync_s(work: _Work, num_local_experts: int, efficiency: float, a2a_fwd_s: float = 0.0) -> float:
    """GPU idle seconds of one MoE layer's forward behind the dropless dispatcher's device-to-host sync.

    Megatron-Core's all-to-all dispatcher copies the token counts per expert to the host (the all-to-all
    split sizes and the grouped GEMM's per-expert sizes, `tokens_per_expert.tolist()`), so the host waits
    for the GPU and the GPU's queue is empty when the host starts launching the rest of the layer. The
    rest then takes max(its GPU time, kernels x launch) plus the drained queue's latency:
    idle = DRAINED_QUEUE_S + max(0, K x KERNEL_LAUNCH_S - GPU time of the post-sync part), with
    K = MOE_POST_SYNC_KERNELS + 2 linears x local experts (Transformer Engine's BF16 GroupedLinear runs one
    GEMM per local expert) and the post-sync GPU time the experts' GEMMs + permutation / activation
    traffic of the forward (+ a2a_fwd_s, its two all-to-alls). NVIDIA's fused grouped-MLP path
    (sync-free routing, CUDA graphs) removes it."""
    if work.moe_fwd_gemm_s <= 0:
        return 0.0
    kernels = MOE_POST_SYNC_KERNELS + 2 * max(1, num_local_experts)
    gpu_s = work.moe_fwd_gemm_s / efficiency + work.moe_fwd_memory_s + a2a_fwd_s
    return DRAINED_QUEUE_S + max(0.0, kernels * KERNEL_LAUNCH_S - gpu_s)


RECOMPUTE_MODULES = ("layernorm", "moe_act", "moe")


def moe_act_norm_recompute_bytes_per_token(m: ModelSpec, tp: int, modules: tuple[str, ...]) -> float:
    """bf16 bytes per token and layer that Megatron-Core's selective recompute of memory-bound modules
    (--recompute-modules; Megatron-Bridge's GPT-OSS BF16 recipes: ["layernorm", "moe_act"]) moves again
    in backward: "layernorm" re-runs the two norms (read + write h each, split by sequence parallel),
    "moe_act" the routed experts' activation (gated: read 2 k f, write k f; else read + write k f). With
    "moe" (the whole MoE layer, moe_layer_recompute_s) the activation is part of that layer's forward, not
    counted here again."""
    unknown = sorted(set(modules) - set(RECOMPUTE_MODULES))
    if unknown:
        raise ValueError(f"recompute_modules: unknown {unknown}, known {list(RECOMPUTE_MODULES)}")
    elems = 0.0
    if "layernorm" in modules:
        elems += 2 * 2 * m.hidden_size
    if "moe_act" in modules and "moe" not in modules and m.num_experts > 1:
        elems += (3 if m.ffn_kind == "gated" else 2) * m.experts_per_token * m.ffn_size
    return 2 * elems / tp


# bytes per routed token copy of the experts' eager epilogue (bf16 2 bytes, bool masks 1), per element of the width
# named: the GLU clamp per element of the expert's ffn width f, the second bias per element of the hidden size h
CLAMP_FWD_BYTES_PER_F = 16  # two clamps (read + write f each, 4 + 4) and the cat of the halves (read + write 2 f: 8)
CLAMP_BWD_BYTES_PER_F = 30  # gate's where(x <= max) 8, linear's where((x >= min).logical_and_(x <= max)) 14, chunk's cat 8
BIAS_FWD_BYTES_PER_H = 12  # b * p written (2), t + b p (read 4, write 2), the cat of the experts' chunks (4)
BIAS_BWD_BYTES_PER_H = 16  # grad x p and its sum to b (4 + 2), grad x b and its sum to p (4 + 2), the split's cat (4)
BIAS_BWD_FROZEN_BYTES_PER_H = 10  # LoRA (the bias frozen): no gradient for b, so grad x b summed to p (6) + the cat (4)


def eager_expert_epilogue_bytes_per_token(m: ModelSpec, cfg: TrainConfig, layout: ParallelLayout,
                                          kernels: EngineKernels) -> float:
    """HBM bytes per token and layer (this GPU's share) of the experts' eager clamp and bias (forward, backward and
    what recompute re-runs), beyond the fused kernels the estimate already charges; 0 unless
    kernels.eager_expert_epilogue and the model has them (ModelSpec.glu_clamp / expert_bias).

    Megatron-Core core_v0.17.0 (the Megatron-Bridge 26.04 container), megatron/core/transformer/moe/experts.py:
    - TEGroupedMLP builds linear_fc2 with skip_bias_add=True and adds its bias in _apply_bias, eager: per local
      expert `t + b * p` (p the token's routing probability, bf16 as the router's logits) and torch.cat of the
      chunks; autograd then runs MulBackward0 (grad x p summed to b, grad x b summed to p) and the split's cat.
    - bias_act_func's fused path, fusions/fused_bias_geglu.py weighted_bias_quick_geglu_impl, clamps before the
      torch.compile'd activation: input.chunk(2), x_glu.clamp(max=limit), x_linear.clamp(-limit, limit),
      torch.cat; PyTorch's clamp_backward (autograd FunctionsManual.cpp) is where(mask, grad, 0) with the masks
      from ge / le (and logical_and_ for two bounds), the chunk's backward a cat.
    --recompute-modules moe_act checkpoints bias_act_func, so the clamp's forward runs again in backward ("moe":
    the whole layer, bias too; full activation checkpointing: both). LoRA freezes the bias: no gradient for b.
    Each GPU's experts see k x the busiest
    rank's load x etp / tp copies of its tokens (_micro_batch_work_uncached), f split etp ways, h whole."""
    if not kernels.eager_expert_epilogue or m.num_experts <= 1 or not (m.expert_bias or m.glu_clamp):
        return 0.0
    e_tp = cfg.tp if layout.etp is None else layout.etp
    copies = m.experts_per_token * kernels.moe_routing_imbalance * e_tp / cfg.tp
    f, h = m.ffn_size / e_tp, m.hidden_size
    modules = () if cfg.activation_checkpointing else kernels.recompute_modules
    whole_forward_again = cfg.activation_checkpointing or "moe" in modules
    per_copy = 0.0
    if m.glu_clamp is not None:
        again = 1 if whole_forward_again or "moe_act" in modules else 0
        per_copy += ((1 + again) * CLAMP_FWD_BYTES_PER_F + CLAMP_BWD_BYTES_PER_F) * f
    if m.expert_bias:
        again = 1 if whole_forward_again else 0
        bwd = BIAS_BWD_BYTES_PER_H if cfg.trainable == "full" else BIAS_BWD_FROZEN_BYTES_PER_H
        per_copy += ((1 + again) * BIAS_FWD_BYTES_PER_H + bwd) * h
    return copies * per_copy


def moe_layer_recompute_s(work: _Work, efficiency: float, a2a_fwd_s: float, host_sync_s: float) -> float:
    """Seconds one MoE layer's forward takes again in backward under Megatron-Core's --recompute-modules moe
    (TransformerConfig.recompute_modules, core_v0.17.0: '"moe": recompute the MoE layer', normal checkpointing:
    the layer's forward is re-run from its saved input): the routed experts' GEMMs and their permutation /
    activation traffic, the dispatch and combine all-to-alls of the forward (a2a_fwd_s, exposed part) and, on
    the dropless path, the dispatcher's host sync once more (host_sync_s)."""
    if work.moe_fwd_gemm_s <= 0:
        return 0.0
    return work.moe_fwd_gemm_s / efficiency + work.moe_fwd_memory_s + a2a_fwd_s + host_sync_s


def unfused_rope_extra_bytes_per_token(m: ModelSpec, tp: int, recompute: bool) -> float:
    """bf16 bytes per token and layer that the eager rotary embedding moves beyond the fused kernel the layer's
    memory term charges: forward (UNFUSED_ROPE_FWD_ELEMS - 2) and backward (UNFUSED_ROPE_BWD_ELEMS - 4) more
    elements per element of q and k ((num_heads + num_kv_heads) x head_dim / tp), and the forward again when
    the layer is recomputed. Megatron-Core runs it eager when TE's fused RoPE refuses the position embedding
    (rope_utils.apply_rotary_pos_emb, core_v0.17.0: YaRN's mscale != 1, "not supported by TE's fused RoPE.
    Using unfused implementation."; gpt-oss: YaRN factor 32, mscale 0.1 ln 32 + 1 = 1.35) or with
    --no-rope-fusion."""
    rotated = (m.num_heads + m.num_kv_heads) * m.head_dim_effective / tp
    fwd_extra = UNFUSED_ROPE_FWD_ELEMS - FUSED_ROPE_FWD_ELEMS
    elems = fwd_extra + (UNFUSED_ROPE_BWD_ELEMS - 2 * FUSED_ROPE_FWD_ELEMS) + (fwd_extra if recompute else 0)
    return 2 * elems * rotated


def busiest_stage_work_s(work: _Work, m: ModelSpec, cfg: TrainConfig, efficiency: float,
                         layers_off_ends: int = 0) -> float:
    """Seconds of the slowest pipeline stage's share of one micro-batch (the whole model without pp)."""
    inner, last = busiest_stage_layers(m.num_layers, cfg.pp, layers_off_ends)
    per_layer = work.layer_gemm_s / efficiency + work.layer_memory_s
    head = work.head_gemm_s / efficiency + work.head_memory_s
    return max(inner * per_layer, last * per_layer + head)


_EFFICIENCY_CACHE: dict[tuple, float] = {}


def gemm_efficiency(gpu: GpuSpec) -> float:
    """The tier's sustained GEMM efficiency: the one at which this model's step time for the reference
    shape (with its communication, on the tier's own links) reproduces the catalog's `mfu`. Bisection
    on a monotone function; cached per tier."""
    key = (gpu.id, gpu.peak_bf16_dense_tflops, gpu.hbm_bandwidth_tb_per_s, gpu.mfu,
           gpu.intra_node_bandwidth_gb_per_s, gpu.gpus_per_node)
    if key in _EFFICIENCY_CACHE:
        return _EFFICIENCY_CACHE[key]
    tokens = REF_CONFIG.micro_batch_size * REF_CONFIG.seq_len * REF_CONFIG.grad_accum
    flops = model_flops_per_token(REF_MODEL, REF_CONFIG) * tokens
    lo, hi = 0.02, MAX_GEMM_EFFICIENCY
    if _mfu_at(REF_MODEL, gpu, REF_CONFIG, hi, flops) < gpu.mfu:
        _EFFICIENCY_CACHE[key] = hi
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        if _mfu_at(REF_MODEL, gpu, REF_CONFIG, mid, flops) < gpu.mfu:
            lo = mid
        else:
            hi = mid
    _EFFICIENCY_CACHE[key] = hi
    return hi


def _mfu_at(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, efficiency: float, flops: float) -> float:
    st = step_time(m, gpu, cfg, _efficiency=efficiency)
    return flops / st.step_s / (gpu.peak_bf16_dense_tflops * TFLOP)


def compute_time_per_micro_batch_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig,
                                   layout: ParallelLayout = _DEFAULT_LAYOUT, kernels: EngineKernels = _DEFAULT_KERNELS,
                                   _efficiency: float | None = None) -> float:
    """One micro-batch's forward + backward on one GPU (its tp / layout.cp / layout.ep share; with pp, the busiest
    stage's layers, the last stage's with the LM head, layout.pp_layers_off_ends), without communication.
    kernels.unfused_rope: each layer also moves unfused_rope_extra_bytes_per_token, kernels.eager_expert_epilogue
    eager_expert_epilogue_bytes_per_token; kernels.cross_entropy_impl
    ("native" / "te", Megatron-Core's --cross-entropy-fusion-impl): the logits move CE_BYTES_PER_LOGIT[impl] instead
    of HEAD_BYTES_PER_LOGIT; the rest of the layout and kernels as _micro_batch_work_uncached reads them."""
    work = _micro_batch_work(m, gpu, cfg, layout, kernels)
    unfused_rope, cross_entropy_impl = kernels.unfused_rope, kernels.cross_entropy_impl
    epilogue = eager_expert_epilogue_bytes_per_token(m, cfg, layout, kernels)
    if unfused_rope or cross_entropy_impl or epilogue:
        hbm = sustained_hbm_bytes_per_s(gpu)
        tokens = cfg.micro_batch_size * cfg.seq_len / layout.cp
        layer_mem = work.layer_memory_s + tokens * epilogue / hbm
        if unfused_rope:
            layer_mem += tokens * unfused_rope_extra_bytes_per_token(m, cfg.tp, cfg.activation_checkpointing) / hbm
        head_mem = work.head_memory_s * (CE_BYTES_PER_LOGIT[cross_entropy_impl] / HEAD_BYTES_PER_LOGIT
                                         if cross_entropy_impl else 1.0)
        work = dataclasses.replace(work, layer_memory_s=layer_mem, head_memory_s=head_mem)
    e = gemm_efficiency(gpu) if _efficiency is None else _efficiency
    fixed = 0.0
    if cfg.strategy in SHARDED_STRATEGIES or cfg.strategy == "fsdp-tp":  # fsdp-tp: FSDP2's same per-layer collectives
        fixed = FIXED_S_PER_LAYER_PER_MICRO_BATCH * m.num_layers / cfg.pp
    return busiest_stage_work_s(work, m, cfg, e, layout.pp_layers_off_ends) + fixed


def hardware_efficiency(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> float:
    """Fraction of dense peak the GPU sustains on this shape (before communication stalls)."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    flops = hardware_flops_per_token(m, cfg) * tokens / (cfg.tp * cfg.pp)
    return flops / (gpu.peak_bf16_dense_tflops * TFLOP * compute_time_per_micro_batch_s(m, gpu, cfg))


def _network_bytes_per_s(gpu: GpuSpec) -> float:
    return gbit_per_s_to_bytes_per_s(gpu.inter_node_bandwidth_gbit_per_s)


def group_link_bytes_per_s(gpu: GpuSpec, cfg: TrainConfig, members_per_node: int) -> float:
    """Bus bandwidth of a ring collective over one parallel group.

    Inside a node that is a GPU's NVLink. A group spanning nodes runs its rings through the node's NICs:
    a node hosting `members_per_node` GPUs of the group, among gpus_per_node / members_per_node such
    groups at once, gives the group that share of the node's network (NCCL runs one ring per NIC and
    each ring crosses every node boundary once: FSDP over all 8 GPUs of a node gets the whole node's
    bandwidth; the data-parallel group of a TP-8 model has one member per node and gets one NIC's).
    """
    intra = gpu.intra_node_bandwidth_gb_per_s * GB
    if num_nodes(cfg, gpu) <= 1 or gpu.inter_node_bandwidth_gbit_per_s <= 0:
        return intra  # no fabric: estimate() marks the config not runnable; the time is only indicative
    share = max(1, min(members_per_node, gpu.gpus_per_node)) / gpu.gpus_per_node
    return min(intra, _network_bytes_per_s(gpu) * share)


def link_bytes_per_s(gpu: GpuSpec, cfg: TrainConfig, cp: int = 1) -> float:
    """The data-parallel group's bus bandwidth: its members per node are the node's GPUs / (tp x cp). Megatron-Core's
    rank order tp-cp-ep-dp-pp puts only tp and cp inside the data-parallel axis (the pipeline stages are outermost);
    the FSDP / ZeRO strategies have tp = pp = 1 and shard over their cp ranks too (cp = 1 here)."""
    model_parallel_per_node = max(1, min(cfg.tp * cp, gpu.gpus_per_node))
    dp = data_parallel_size(cfg)
    members = min(dp, max(1, gpu.gpus_per_node // model_parallel_per_node))
    if cfg.num_gpus <= gpu.gpus_per_node:
        members = gpu.gpus_per_node
    return group_link_bytes_per_s(gpu, cfg, members)


def with_network(gpu: GpuSpec, gbit_per_s_per_node: float | None) -> GpuSpec:
    """The tier on a cluster whose nodes have `gbit_per_s_per_node` of network in all (None: the catalog's).
    A tier without a multi-node fabric in the catalog keeps none."""
    if gbit_per_s_per_node is None or gpu.inter_node_bandwidth_gbit_per_s <= 0:
        return gpu
    return dataclasses.replace(gpu, inter_node_bandwidth_gbit_per_s=float(gbit_per_s_per_node))


def host_adam_params_per_s_per_node(gpu: GpuSpec) -> float:
    """Host optimizer rate of one node: measured per-core rate x physical cores, capped by memory bandwidth."""
    by_cores = CPU_ADAM_PARAMS_PER_S_PER_CORE * gpu.host_cpu_cores_per_node
    by_memory = HOST_MEMORY_BANDWIDTH_GB_PER_S * GB / CPU_ADAM_BYTES_PER_PARAM
    return min(by_cores, by_memory)


@dataclass(frozen=True)
class StepTime:
    compute_s: float
    comm_s: float
    offload_s: float
    step_s: float
    tokens_per_step: int
    bottleneck: str
    tp_comm_s: float = 0.0
    bubble_s: float = 0.0
    fixed_s: float = 0.0  # part of step_s: per-step and per-micro-batch overhead (advisor/step_overhead.py)


def last_micro_batch_overlap_s(compute_s: float, reduce_scatter_s: float, all_gather_s: float,
                               micro_fwd_s: float, micro_bwd_s: float) -> float:
    """Busy seconds of a step whose data-parallel sync hides behind one micro-batch only: Megatron-Core's DDP
    with --overlap-grad-reduce / --overlap-param-gather (core_v0.17.0 pipeline_parallel/schedules.py runs
    every micro-batch but the last under no_sync, so the bucketed gradient reduce-scatters start in the last
    micro-batch's backward; the distributed optimizer's parameter all-gathers are waited for bucket by bucket
    in the next step's first forward). exposed = max(0, RS - that backward) + max(0, AG - that forward); the
    hidden part costs (1 - COMM_OVERLAP_EFFICIENCY) of itself, as the whole-step overlap does."""
    hidden = min(reduce_scatter_s, micro_bwd_s) + min(all_gather_s, micro_fwd_s)
    exposed = reduce_scatter_s + all_gather_s - hidden
    return compute_s + exposed + (1 - COMM_OVERLAP_EFFICIENCY) * hidden


def sequence_parallel_refusal(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> str | None:
    """Why DeepSpeed would refuse this zero3-sp layout (ulysses_sp.UlyssesSPAttentionHF: num_heads must divide by
    the degree, num_kv_heads divide by it or it by num_kv_heads), or whole nodes are not used; None if it runs."""
    sp = ulysses_degree(cfg.strategy, cfg.num_gpus, gpu.gpus_per_node)
    if sp == 1:
        return None if cfg.strategy != "zero3-sp" else "zero3-sp needs 2 or more GPUs (sequence parallel over them)"
    if cfg.num_gpus % sp:
        return f"zero3-sp: num_gpus {cfg.num_gpus} is not whole nodes of {sp} GPUs (Ulysses runs over a node)"
    kv = m.num_kv_heads
    if m.num_heads % sp or (kv % sp and sp % kv):
        return (f"zero3-sp: sequence parallel {sp} does not divide the model's {m.num_heads} attention / "
                f"{kv} key-value heads")
    return None


def ulysses_all_to_all_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, sp: int) -> float:
    """Exposed Ulysses all-to-alls of one micro-batch (DeepSpeed-Ulysses, arXiv 2309.14509 sec. 3.1; ALST,
    arXiv 2506.13996 sec. 3.1): per layer, the forward moves q, k, v from sequence-sharded to head-sharded and
    the attention output back (4 all-to-alls); backward moves their gradients the same way; recompute repeats
    the forward's. Each GPU sends (sp - 1) / sp of its local tensors (bf16, seq_len / sp tokens; k and v
    replicated up to sp heads when num_kv_heads < sp). On the critical path (the attention waits for them),
    on the node's links at TP_LINK_EFFICIENCY."""
    kv_heads = max(m.num_kv_heads, sp)
    local_tokens = cfg.micro_batch_size * cfg.seq_len / sp
    per_pass = 2 * local_tokens * (2 * m.num_heads + 2 * kv_heads) * m.head_dim_effective * (sp - 1) / sp
    passes = 2 + (1 if cfg.activation_checkpointing else 0)
    link = gpu.intra_node_bandwidth_gb_per_s * GB * TP_LINK_EFFICIENCY
    return passes * per_pass * m.num_layers / link


def _resolve_layout(gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout) -> tuple[str, int, ParallelLayout]:
    """(the strategy the formulas price, Ulysses degree, the layout it implies). "zero3-sp" is ZeRO-3 over every
    GPU with Ulysses splitting each sequence over the GPUs of a node; "hsdp" is FSDP with shard_group = the GPUs
    of a node (unless given); "fsdp-tp" is the "megatron" layout with dp_sharded."""
    s = cfg.strategy
    sp = 1
    if s == "zero3-sp":
        sp, s = ulysses_degree(s, cfg.num_gpus, gpu.gpus_per_node), "zero3"
    if s == "hsdp":
        layout = dataclasses.replace(layout, shard_group=layout.shard_group or min(gpu.gpus_per_node, cfg.num_gpus))
        s = "fsdp"
    elif s == "fsdp-tp":
        layout, s = dataclasses.replace(layout, dp_sharded=True), "megatron"
    return s, sp, layout


def expert_parallel_copies_per_token(m: ModelSpec, ep: int, moe_dispatcher: str) -> float:
    """Copies of a token the expert-parallel dispatch sends. "alltoall" (Megatron-Core's MoEAlltoAllTokenDispatcher,
    AutoModel's and torchtitan's all-to-all): one per routed expert, top-k. "deepep": one per destination rank
    (DeepEP's dispatch takes get_dispatch_layout's is_token_in_rank [tokens x ranks] and sends a token to each rank
    holding any of its experts; deepseek-ai/DeepEP README, Buffer.get_dispatch_layout / Buffer.dispatch); under
    balanced routing the expected number of distinct ranks among k of E experts, E / ep per rank, drawn without
    replacement: ep x (1 - C(E - E / ep, k) / C(E, k)) (128 experts top-8 over 8 ranks: 5.34; over 32: 7.36)."""
    k = m.experts_per_token
    if moe_dispatcher != "deepep" or ep <= 1:
        return float(k)
    e = m.num_experts
    per_rank = e // ep
    return ep * (1 - math.comb(e - per_rank, k) / math.comb(e, k))


def _expert_tp(cfg: TrainConfig, layout: ParallelLayout) -> int:
    """The expert tensor parallel degree in effect: layout.etp, or tp where it is None (ParallelLayout.etp)."""
    return cfg.tp if layout.etp is None else layout.etp


def _expert_all_to_all_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout,
                         moe_dispatcher: str = "alltoall") -> float:
    """One expert-parallel all-to-all of one MoE layer and micro-batch: every routed token copy (bf16, seq_len / cp
    tokens; expert_parallel_copies_per_token copies for the dispatcher), (ep - 1) / ep of it leaving the GPU; on
    NVLink when the ep x tp ranks fit in a node, else the group's share of the node's network. Expert tensor parallel below tp (layout.etp): each GPU dispatches its
    sequence-parallel share gathered over the etp ranks (tokens x etp / tp; Megatron-Core core_v0.17.0
    token_dispatcher.py: the dispatcher's tp_group is expt_tp, the all-to-all runs on the local tokens and
    dispatch_postprocess gathers over expt_tp), and the folded EP group spans ep x etp GPUs (arXiv 2504.14960)."""
    ep = layout.ep
    etp = _expert_tp(cfg, layout)
    copies = expert_parallel_copies_per_token(m, ep, moe_dispatcher)
    routed = cfg.micro_batch_size * cfg.seq_len / layout.cp * copies * m.hidden_size * 2
    if etp != cfg.tp:
        routed = routed * etp / cfg.tp
    a2a_link = (gpu.intra_node_bandwidth_gb_per_s * GB if ep * etp <= gpu.gpus_per_node
                else group_link_bytes_per_s(gpu, cfg, max(1, gpu.gpus_per_node // etp)))
    return routed * (ep - 1) / ep / (a2a_link * TP_LINK_EFFICIENCY)


def _micro_batch_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout, kernels: EngineKernels,
                   sp: int, efficiency: float | None) -> float:
    """One micro-batch on the busiest pipeline stage: its compute (compute_time_per_micro_batch_s) plus what
    stalls it besides tensor / pipeline parallel traffic: Ulysses' all-to-alls, the exposed expert all-to-alls,
    the MoE dispatcher's host syncs, selective recompute, and context parallel's ring beyond its overlap."""
    cp, ep = layout.cp, layout.ep
    # Ulysses does the work of context parallel: seq_len / sp tokens per GPU in every GEMM, and attention over the
    # whole sequence for num_heads / sp heads (the same FLOPs as a ring's local queries against every key)
    work_layout = dataclasses.replace(layout, cp=cp * sp) if sp > 1 else layout
    micro = compute_time_per_micro_batch_s(m, gpu, cfg, work_layout, kernels, efficiency)
    if sp > 1:
        micro += ulysses_all_to_all_s(m, gpu, cfg, sp)
    stage_layers = busiest_stage_layers(m.num_layers, cfg.pp, layout.pp_layers_off_ends)[0]
    load = kernels.moe_routing_imbalance  # the busiest rank receives load x its balanced share; the others wait
    one_a2a = (load * _expert_all_to_all_s(m, gpu, cfg, layout, kernels.moe_dispatcher)
               if ep > 1 and m.num_experts > 1 else 0.0)
    if one_a2a:  # all-to-all of every routed token copy, 4 per layer (+2 with recompute)
        a2a = (4 + (2 if cfg.activation_checkpointing else 0)) * one_a2a
        micro += a2a * stage_layers * (1 - layout.ep_overlap)
    e = gemm_efficiency(gpu) if efficiency is None else efficiency
    work = _micro_batch_work(m, gpu, cfg, work_layout, kernels)
    a2a_fwd = 2 * one_a2a
    host_sync = 0.0
    if kernels.moe_host_sync and m.num_experts > 1:  # once per MoE layer forward (again in a recomputed forward)
        local = m.num_experts // max(1, min(ep, m.num_experts))
        host_sync = moe_host_sync_s(work, local, e, a2a_fwd)
        fwd_passes = 1 + (1 if cfg.activation_checkpointing else 0)
        micro += fwd_passes * stage_layers * host_sync
    if kernels.recompute_modules and not cfg.activation_checkpointing:
        per_token = moe_act_norm_recompute_bytes_per_token(m, cfg.tp, kernels.recompute_modules)
        hbm = sustained_hbm_bytes_per_s(gpu)
        micro += stage_layers * cfg.micro_batch_size * cfg.seq_len / cp * per_token / hbm
        if "moe" in kernels.recompute_modules:
            micro += stage_layers * moe_layer_recompute_s(work, e, a2a_fwd * (1 - layout.ep_overlap), host_sync)
    if cp > 1:  # ring attention: each layer passes the local K and V cp - 1 times (x3 with backward)
        kv_bytes = 2 * cfg.micro_batch_size * cfg.seq_len / cp * m.num_kv_heads * m.head_dim_effective * 2 / cfg.tp
        ring_link = group_link_bytes_per_s(gpu, cfg, min(cp, gpu.gpus_per_node)) if cfg.tp * cp > gpu.gpus_per_node \
            else gpu.intra_node_bandwidth_gb_per_s * GB
        cp_comm = 3 * (cp - 1) * kv_bytes * (m.num_layers / cfg.pp) / ring_link
        micro += max(0.0, cp_comm - COMM_OVERLAP_EFFICIENCY * micro) + (1 - COMM_OVERLAP_EFFICIENCY) * min(cp_comm, micro)
    return micro


def _tensor_parallel_comm_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout) -> float:
    """Exposed tensor-parallel traffic of one micro-batch on the busiest stage, on NVLink (TP groups stay inside
    a node): 4 all-gather / reduce-scatter pairs per layer (+2 with recompute), less the tp_overlap hidden."""
    if cfg.tp <= 1:
        return 0.0
    overlap = DEFAULT_TP_OVERLAP.get(cfg.strategy, 0.0) if layout.tp_overlap is None else layout.tp_overlap
    stage_layers = busiest_stage_layers(m.num_layers, cfg.pp, layout.pp_layers_off_ends)[0]
    act_bytes = cfg.micro_batch_size * cfg.seq_len / layout.cp * m.hidden_size * 2  # this GPU's seq_len / cp tokens
    collectives = 4 + (2 if cfg.activation_checkpointing else 0)
    if _expert_tp(cfg, layout) != cfg.tp and m.num_experts > 1:
        # expert tensor parallel below tp: the MoE block's all-gather / reduce-scatter run over the etp ranks
        # (Megatron-Core's dispatcher, tp_group = expt_tp), priced with the all-to-all's tokens x etp / tp:
        # only the attention block's pair is left on the tp group
        collectives //= 2
    nvlink = gpu.intra_node_bandwidth_gb_per_s * GB * TP_LINK_EFFICIENCY
    per_layer = collectives * 2 * (cfg.tp - 1) / cfg.tp * act_bytes / nvlink
    return per_layer * stage_layers * (1 - overlap)


def _pipeline_p2p_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, layout: ParallelLayout) -> float:
    """One micro-batch's activations crossing a stage boundary forward and backward (v x with interleaving)."""
    if cfg.pp <= 1:
        return 0.0
    act_bytes = cfg.micro_batch_size * cfg.seq_len / layout.cp * m.hidden_size * 2 / cfg.tp  # seq_len / cp tokens
    # Megatron-Core's rank order tp-cp-ep-dp-pp puts the pipeline stages outermost: consecutive stages are
    # num_gpus / pp ranks apart, so on more than one node the stages span every node and a stage boundary crosses
    # the network (core_v0.17.0 parallel_state.initialize_model_parallel, order "tp-cp-ep-dp-pp")
    crosses_nodes = cfg.num_gpus > gpu.gpus_per_node and gpu.inter_node_bandwidth_gbit_per_s > 0
    bw = (_network_bytes_per_s(gpu) / gpu.gpus_per_node if crosses_nodes
          else gpu.intra_node_bandwidth_gb_per_s * GB)
    return 2 * act_bytes / bw * max(1, layout.pp_interleave)  # interleaving: v x the boundary crossings (Narayanan et al. 2021)


def _data_parallel_comm_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, s: str, layout: ParallelLayout,
                          group: int, grad_reduce_bytes: int = 2) -> float:
    """Seconds of data-parallel traffic per optimizer step (before overlap with compute) for the resolved
    strategy s over a group of `group` ranks (dp x cp x Ulysses sp): see the module docstring. Parameters are
    gathered in bf16; gradients are reduced at grad_reduce_bytes per element (EngineKernels.grad_reduce_bytes)."""
    ep = layout.ep
    r = grad_reduce_bytes / 2  # the gradient collectives' bytes over bf16's
    n = param_count(m)
    sync_bytes = 2 * n if cfg.trainable == "full" else 2 * lora_trainable_params(m, cfg.lora_rank)
    ring = (group - 1) / group if group > 1 else 0.0
    link = link_bytes_per_s(gpu, cfg, layout.cp if s == "megatron" else 1) * LINK_EFFICIENCY
    comm = 0.0
    if s in SHARDED_STRATEGIES:
        experts = expert_param_count(m) if ep > 1 and m.num_experts > 1 else 0
        if experts:  # FSDP + EP: the dense part below, each rank's num_experts / ep experts apart
            comm += _sharded_expert_comm_s(m, gpu, cfg, s, ep, group, experts, grad_reduce_bytes)
            n -= experts
            if cfg.trainable == "full":
                sync_bytes -= 2 * experts
        gather = 2 * (2 * n) * cfg.grad_accum  # forward + backward all-gathers of bf16 params
        if s == "zero3-offload-all":
            gather = 0.0  # parameters come from the host (PCIe, below); the ring moves only gradients
        g = group if layout.shard_group is None else max(1, min(layout.shard_group, group))
        if g == group:
            comm += (gather + r * sync_bytes * cfg.grad_accum) * ring / link
        else:  # HSDP: gathers and reduce-scatters inside the shard group, gradient all-reduce across replicas
            replicas = group // g
            inside = group_link_bytes_per_s(gpu, dataclasses.replace(cfg, num_gpus=g), g) * LINK_EFFICIENCY
            comm += (gather + r * sync_bytes * cfg.grad_accum) * (g - 1) / g / inside
            across = group_link_bytes_per_s(gpu, cfg, max(1, gpu.gpus_per_node // g)) * LINK_EFFICIENCY
            comm += 2 * r * sync_bytes / g * (replicas - 1) / replicas / across
    elif s in ("ddp", "zero2"):
        comm = 2 * r * sync_bytes * ring / link
    elif s == "megatron":
        expert_bytes = 0.0
        if ep > 1 and m.num_experts > 1 and cfg.trainable == "full":
            expert_bytes = 2 * expert_param_count(m)
        shard = (sync_bytes - expert_bytes) / (cfg.tp * cfg.pp)
        if layout.dp_sharded:  # fsdp-tp: all-gather (forward, backward) + reduce-scatter every micro-batch
            comm = (2 + r) * shard * cfg.grad_accum * ring / link
        else:  # distributed optimizer: reduce-scatter (gradients) + all-gather (bf16 parameters) once a step
            comm = (r + 1) * shard * ring / link
        if expert_bytes:  # experts sync over the expert-data-parallel group: dp x cp / ep ranks holding the same experts
            etp = _expert_tp(cfg, layout)
            # expert tensor parallel below tp (parallel folding, arXiv 2504.14960): dp x cp x tp / (ep x etp) ranks
            edp = max(1, group // ep) if etp == cfg.tp else max(1, group * cfg.tp // (ep * etp))
            if edp > 1:  # Megatron's rank order tp-cp-ep-dp-pp: a node holds gpus_per_node / (tp ep) members of each group
                e_link = group_link_bytes_per_s(gpu, cfg, max(1, gpu.gpus_per_node // (etp * ep))) * LINK_EFFICIENCY
                e_shard = expert_bytes / (etp * cfg.pp * ep)
                comm += ((2 + r) * cfg.grad_accum if layout.dp_sharded else r + 1) * e_shard * (edp - 1) / edp / e_link
    return comm


def _sharded_expert_comm_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, s: str, ep: int, group: int,
                           experts: int, grad_reduce_bytes: int = 2) -> float:
    """FSDP / ZeRO-3 traffic of the routed experts with expert parallel, per optimizer step (NeMo AutoModel's MoE
    parallelizer, NVIDIA-NeMo/Automodel 36044ad3d nemo_automodel/components/moe/parallelizer.py apply_fsdp: the
    experts are left out of the block's fully_shard (ignored_params) and fully_shard on the "ep_shard" mesh only
    when it has more than one rank; components/distributed/mesh_utils.py: ep_shard = the data-parallel x cp x tp
    ranks / ep, ep the inner mesh axis). Each rank holds experts / ep parameters, gathered (forward, backward) and
    reduce-scattered over the group / ep ranks that hold the same experts (none when group / ep == 1: each expert
    lives on one rank and syncs with nobody); the ep_shard group's members are ep ranks apart, so a node holds
    gpus_per_node / ep of them (group_link_bytes_per_s)."""
    edp = max(1, group // ep)
    if edp <= 1:
        return 0.0
    local = experts / ep
    gather = 0.0 if s == "zero3-offload-all" else 2 * (2 * local)
    sync = grad_reduce_bytes * local if cfg.trainable == "full" else 0.0
    link = group_link_bytes_per_s(gpu, cfg, max(1, gpu.gpus_per_node // ep)) * LINK_EFFICIENCY
    return (gather + sync) * cfg.grad_accum * (edp - 1) / edp / link


def _offload_s(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, s: str, dp: int, host_optimizer: str
               ) -> tuple[float, float]:
    """(the host step after backward, not overlapped; the PCIe traffic overlapped with compute) per optimizer
    step of the offload strategies (ZeRO-Offload); (0, 0) for the others."""
    if s not in ("zero3-offload", "zero3-offload-all"):
        return 0.0, 0.0
    n = param_count(m)
    pcie = gpu.pcie_bandwidth_gb_per_s * GB * PCIE_EFFICIENCY
    shard = (n if cfg.trainable == "full" else lora_trainable_params(m, cfg.lora_rank)) / dp
    # during backward: bf16 gradient shards to the host every micro-step (hidden behind compute)
    overlapped_pcie = 2 * shard * cfg.grad_accum / pcie
    if s == "zero3-offload-all":  # every forward / backward (and recompute) streams the parameters in
        fetches = 2 + (1 if cfg.activation_checkpointing else 0)
        overlapped_pcie += fetches * 2 * (n / dp) * cfg.grad_accum / pcie
    gpus_here = min(cfg.num_gpus, gpu.gpus_per_node)
    if host_optimizer == "deepspeed":  # DeepSpeed's measured host path, the upload included
        offload = shard * gpus_here / DEEPSPEED_OFFLOAD_PARAMS_PER_S_PER_NODE
    else:
        cpu_adam = shard * gpus_here / host_adam_params_per_s_per_node(gpu)
        upload = 0.0 if s == "zero3-offload-all" else 2 * shard / pcie  # updated bf16 params back to the GPU
        offload = cpu_adam + upload
    return offload, overlapped_pcie


def step_time(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, *, layout: ParallelLayout = _DEFAULT_LAYOUT,
              kernels: EngineKernels = _DEFAULT_KERNELS, _efficiency: float | None = None) -> StepTime:
    """Seconds per optimizer step on every GPU (all micro-batches of the gradient accumulation).

    layout: the parallel layout beyond TrainConfig (advisor.step_options.ParallelLayout: tp_overlap,
    pp_interleave, shard_group, dp_sharded, cp, ep, etp, ep_overlap, pp_layers_off_ends); kernels: the engine's kernel
    and runtime choices (advisor.step_options.EngineKernels: moe_host_sync, recompute_modules, host_optimizer,
    unfused_rope, cross_entropy_impl, dp_overlap_window, grad_reduce_bytes, ...). Each field's meaning and unit is in
    its docstring there;
    the defaults are what the executor runs. The parts: _micro_batch_s (compute and what stalls it),
    _tensor_parallel_comm_s, _pipeline_p2p_s, the 1F1B bubble, _data_parallel_comm_s (overlapped with compute),
    _offload_s, fixed_step_overhead_s.
    """
    s, sp, layout = _resolve_layout(gpu, cfg, layout)
    cp = layout.cp
    if cfg.num_gpus % (cfg.tp * cfg.pp * cp):
        raise ValueError(f"num_gpus {cfg.num_gpus} is not a multiple of tp x pp x cp = {cfg.tp * cfg.pp * cp}")
    dp = max(1, data_parallel_size(cfg) // cp // sp)
    tokens_per_gpu_step = cfg.micro_batch_size * cfg.seq_len * cfg.grad_accum
    tokens_per_step = tokens_per_gpu_step * dp
    micro = _micro_batch_s(m, gpu, cfg, layout, kernels, sp, _efficiency)
    tp_comm = _tensor_parallel_comm_s(m, gpu, cfg, layout)
    p2p = _pipeline_p2p_s(m, gpu, cfg, layout)
    per_micro = micro + tp_comm + p2p
    compute = per_micro * cfg.grad_accum
    bubble = 0.0
    if cfg.pp > 1:  # 1F1B: (p-1) idle micro-batch slots per step; interleaving divides them by v
        bubble = per_micro * (cfg.pp - 1) / max(1, layout.pp_interleave)
        compute += bubble

    # FSDP / the distributed optimizer / ZeRO-3 shard over the context-parallel ranks too
    comm = _data_parallel_comm_s(m, gpu, cfg, s, layout, dp * cp * sp, kernels.grad_reduce_bytes)
    offload, overlapped_pcie = _offload_s(m, gpu, cfg, s, dp, kernels.host_optimizer)

    if kernels.dp_overlap_window and s == "megatron" and not layout.dp_sharded and comm > 0:
        passes = (3 if cfg.trainable == "full" else 2) + (1 if cfg.activation_checkpointing else 0)
        reduce_share = kernels.grad_reduce_bytes / (kernels.grad_reduce_bytes + 2)  # RS of gradients, AG of bf16 params
        busy = last_micro_batch_overlap_s(compute, comm * reduce_share, comm * (1 - reduce_share),
                                          per_micro / passes, per_micro * (passes - 1) / passes)
    else:
        busy = max(compute, comm, overlapped_pcie)
        busy += (1 - COMM_OVERLAP_EFFICIENCY) * min(compute, comm)
    fixed = fixed_step_overhead_s(m, gpu, cfg, micro)
    step = busy + offload + fixed
    if offload > busy:
        bottleneck = "offload"
    elif overlapped_pcie > max(compute, comm):
        bottleneck = "offload"
    elif comm > compute:
        bottleneck = "communication"
    else:
        bottleneck = "compute"
    return StepTime(compute, comm, offload + max(0.0, overlapped_pcie - max(compute, comm)), step,
                    tokens_per_step, bottleneck, tp_comm * cfg.grad_accum, bubble, fixed)
