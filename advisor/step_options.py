"""What throughput.step_time needs beyond TrainConfig: the parallel layout and the engine's kernel / runtime choices.

Two frozen value objects, each default the estimator's default (the executor's own layout and kernels), so
step_time(m, gpu, cfg) prices what sftplan runs, and a published recipe states only what it does differently
(benchmarks/published_throughput.py builds both from a row). The formulas that use each field, and their
sources, are in advisor/throughput.py.
"""

from __future__ import annotations

from dataclasses import dataclass

HOST_OPTIMIZERS = ("deepspeed", "torch-fused")
ATTENTION_KERNELS = ("flash", "te-fused")  # advisor.throughput.CAUSAL_ATTENTION_TIME_FRACTION
MOE_DISPATCHERS = ("alltoall", "deepep")  # advisor.throughput.expert_parallel_copies_per_token
CROSS_ENTROPY_IMPLS = ("native", "te")  # advisor.throughput.CE_BYTES_PER_LOGIT


@dataclass(frozen=True)
class ParallelLayout:
    """The layout beyond the Strategy names and TrainConfig's tp / pp (accelerate's ParallelismConfig axes).

    The strategies named for these layouts: "hsdp" is FSDP with shard_group = the GPUs of a node (unless
    given); "fsdp-tp" is the tp layout with dp_sharded (FSDP over the data-parallel ranks, plain TP)."""

    tp_overlap: float | None = None
    """Fraction (0-1) of the tensor-parallel communication hidden behind GEMMs: 0 = plain TP; None: the
    strategy's default, 0.5 for Megatron-Core (--tp-comm-overlap), 0 otherwise (throughput.DEFAULT_TP_OVERLAP)."""
    pp_interleave: int = 1
    """Virtual pipeline chunks per GPU (interleaved 1F1B): the bubble / v, v x the stage-boundary crossings."""
    shard_group: int | None = None
    """Ranks per shard group: FSDP / ZeRO-3 shards over groups of this many ranks and replicates across them
    (HSDP: the GPUs of a node); None: every data-parallel rank."""
    dp_sharded: bool = False
    """With tp / pp (the "megatron" layout) the data-parallel axis is FSDP (fsdp-tp: parameters all-gathered
    every micro-batch) instead of Megatron's distributed optimizer (one reduce-scatter + all-gather a step)."""
    cp: int = 1
    """Context parallel degree (num_gpus = dp x tp x pp x cp): each GPU holds seq_len / cp tokens of every
    sequence and passes K / V around a ring, overlapped with attention."""
    ep: int = 1
    """Expert parallel degree of an MoE model (inside the data-parallel ranks): ep x larger expert GEMMs, plus
    the token all-to-alls (dispatch and combine, forward and backward)."""
    etp: int | None = None
    """Expert tensor parallel degree (Megatron-Core --expert-tensor-parallel-size; "MoE Parallel Folding", arXiv
    2504.14960; core_v0.17.0 model_parallel_config.py: None means tp): the ranks that split each expert's ffn. Below
    tp the expert layers fold onto the TP x DP ranks: each GPU dispatches its sequence-parallel share of the tokens
    (tokens x etp / tp), the MoE block's TP all-gather / reduce-scatter run over the etp ranks (none at etp 1), the
    EP all-to-all stays on NVLink while ep x etp GPUs fit in a node, and the experts' gradients sync over the
    dp x tp / (ep x etp) ranks holding the same expert shard. None: tp (the experts split as the dense layers)."""
    ep_overlap: float = 0.0
    """Fraction (0-1) of the expert-parallel all-to-alls hidden: 0, as Megatron-Core hides them only with
    --overlap-moe-expert-parallel-comm (its TP-comm overlap does not touch them)."""
    pp_layers_off_ends: int = 0
    """Transformer layers taken off each of the first and last pipeline stages to balance the embedding /
    output layer (throughput.busiest_stage_layers; Llama 3: one each)."""

    def __post_init__(self) -> None:
        if self.etp is not None and (not isinstance(self.etp, int) or self.etp < 1):
            raise ValueError(f"etp must be a positive integer (expert tensor parallel degree) or None, got {self.etp!r}")


@dataclass(frozen=True)
class EngineKernels:
    """The engine's kernel and runtime choices that change a step's time at the same layout."""

    moe_host_sync: bool = False
    """The MoE layers run Megatron-Core's unfused dropless path, whose dispatcher syncs the host once per layer
    forward (throughput.moe_host_sync_s). Default off: the executor's transformers grouped_mm experts keep the
    offsets on the device, and fused grouped-MLP kernels remove the sync."""
    eager_expert_epilogue: bool = False
    """The routed experts' second bias and GLU clamp (ModelSpec.expert_bias / glu_clamp) run as eager PyTorch ops
    around the grouped GEMMs (throughput.eager_expert_epilogue_bytes_per_token): Megatron-Core's BF16 TEGroupedMLP
    (core_v0.17.0), the unfused path Megatron-Bridge's BF16 GPT-OSS recipes run. Default off: only the published
    rows' architectures carry these fields (sftplan's config.json reader does not take gpt_oss, whose transformers
    experts clamp and add biases eagerly too)."""
    recompute_modules: tuple[str, ...] = ()
    """Megatron-Core's selective recompute (--recompute-modules): "layernorm" (the two norms, read + write h) and
    "moe_act" (the experts' activation, read 2 k f, write k f) run their forward again in backward
    (throughput.moe_act_norm_recompute_bytes_per_token); "moe" re-runs the whole MoE layer's forward (experts,
    permutation, all-to-alls, host sync: throughput.moe_layer_recompute_s); ignored with full activation
    checkpointing."""
    host_optimizer: str = "deepspeed"
    """The engine of an offload strategy's host step: "deepspeed" (the executor's zero3-offload /
    zero3-offload-all: DeepSpeed's measured host path) or "torch-fused" (FSDP2 CPU offload with torch's fused
    AdamW); see throughput's module docstring."""
    unfused_rope: bool = False
    """The rotary embedding runs as eager PyTorch ops (throughput.unfused_rope_extra_bytes_per_token;
    Megatron-Core with YaRN's mscale != 1, e.g. gpt-oss, or --no-rope-fusion)."""
    cross_entropy_impl: str | None = None
    """The loss kernel of Megatron-Core's --cross-entropy-loss-fusion: "native" (NATIVE_CE_BYTES_PER_LOGIT) or
    "te" (TE_CE_BYTES_PER_LOGIT), bytes per logit; None: the generic HEAD_BYTES_PER_LOGIT."""
    attention_kernel: str = "flash"
    """The attention kernel family (throughput.CAUSAL_ATTENTION_TIME_FRACTION): "flash" (FlashAttention as run by
    HF transformers / torchtitan / llm-foundry: the executor's) or "te-fused" (Transformer Engine's fused attention,
    Megatron-Core's layer spec: causal attention at half the non-causal time)."""
    moe_dispatcher: str = "alltoall"
    """The expert-parallel token dispatcher (throughput.expert_parallel_copies_per_token): "alltoall" sends one copy
    per routed expert (the executor's and Megatron-Core's all-to-all dispatcher), "deepep" one per destination rank
    (DeepEP; Megatron-Core's flex dispatcher with the deepep backend, NeMo AutoModel's DeepEP) and permutes after the
    receive."""
    moe_routing_imbalance: float = 1.0
    """The busiest expert-parallel rank's routed tokens over the balanced share (>= 1): its expert GEMMs,
    permutation / activation traffic and all-to-all receive that many, and the layer waits for it. 1.0: balanced
    routing (forced balancing, AutoModel's fake balanced gate); a dropless run with learned (aux-loss) routing carries
    more (benchmarks/published_throughput.py derives it from a source's forced / dropless pairs)."""
    dp_overlap_window: bool = False
    """The "megatron" layout's distributed-optimizer sync (reduce-scatter + all-gather, half each) hides only
    behind the last micro-batch's backward and the first one's forward (throughput.last_micro_batch_overlap_s;
    Megatron-Core DDP with --overlap-grad-reduce / --overlap-param-gather); the forward / backward split of a
    micro-batch follows its GEMM passes (1 : 2, recompute in backward). False: overlapped with the whole step."""

    grad_reduce_bytes: int = 2
    """Bytes per gradient element in the data-parallel reduce-scatter / all-reduce: 2 (bf16 gradients: the
    executor's runs, accelerate's FSDP2 MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16) for bf16 mixed and
    DeepSpeed's communication_data_type, the bf16 model dtype unless set) or 4 (fp32: Megatron-LM with --bf16, whose
    arguments.py sets accumulate_allreduce_grads_in_fp32 unless --grad-reduce-in-bf16, "bfloat16 requires gradient
    accumulation and all-reduce to be done in fp32"; Megatron-Bridge's recipes, DistributedDataParallelConfig(
    grad_reduce_in_fp32=True); torchtitan's FSDP2 mixed_precision_reduce default). Parameters are gathered in bf16."""

    def __post_init__(self) -> None:
        if self.grad_reduce_bytes not in (2, 4):
            raise ValueError(f"grad_reduce_bytes must be 2 (bf16) or 4 (fp32), got {self.grad_reduce_bytes!r}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise ValueError(f"attention_kernel must be one of {', '.join(ATTENTION_KERNELS)}, "
                             f"got {self.attention_kernel!r}")
        if self.moe_dispatcher not in MOE_DISPATCHERS:
            raise ValueError(f"moe_dispatcher must be one of {', '.join(MOE_DISPATCHERS)}, got {self.moe_dispatcher!r}")
        if not isinstance(self.moe_routing_imbalance, (int, float)) or self.moe_routing_imbalance < 1:
            raise ValueError(f"moe_routing_imbalance must be a number >= 1 (busiest rank's load over the balanced "
                             f"share), got {self.moe_routing_imbalance!r}")
        if self.cross_entropy_impl is not None and self.cross_entropy_impl not in CROSS_ENTROPY_IMPLS:
            raise ValueError(f"cross_entropy_impl must be one of {', '.join(CROSS_ENTROPY_IMPLS)} or None, "
                             f"got {self.cross_entropy_impl!r}")
        if self.host_optimizer not in HOST_OPTIMIZERS:
            raise ValueError(f"host_optimizer must be one of {', '.join(HOST_OPTIMIZERS)}, "
                             f"got {self.host_optimizer!r}")
