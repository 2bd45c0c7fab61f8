"""Bytes per GPU, component by component. Pure functions of (model, config, GPU); integers out.

Sources:
- Model states: ZeRO (Rajbhandari et al. 2020), mixed-precision AdamW = 2 (bf16 weights) + 2 (bf16
  grads) + 12 (fp32 master, momentum, variance) = 16 bytes/param; stage 2 shards grads and optimizer,
  stage 3 / FSDP full shard shards all three. Pure bf16 (torchtune, litgpt "bf16-true"): AdamW
  moments in bf16 = 2 + 2 + 4 = 8 bytes/param.
- Activations: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models"), 34 s b h bytes per layer without the 5 a s^2 b term (flash attention keeps no s x s
  scores), generalised to GQA, head_dim and gated MLPs, without dropout masks (fine-tuning runs with
  dropout 0). With full activation checkpointing a layer keeps only its 2 s b h input, plus one
  layer's full activations during recompute.
- Logits: b s V for the bf16 logits, an fp32 upcast for the loss and its fp32 gradient (HF's loss).
- FSDP / ZeRO-3 gather one unit at a time and prefetch the next: 2 units of bf16 params + grads.
  DeepSpeed's estimate_zero3_model_states_mem_needs counts 4 bytes x largest layer for the same.
- CPU offload (ZeRO-Offload, Ren et al. 2021): fp32 master + moments + fp32 grads = 16 bytes/param
  on the host, x1.5 pinned/buffer factor as DeepSpeed's own estimator uses.
"""

from __future__ import annotations

from advisor.architecture import layer_params, lora_trainable_params, param_count
from advisor.specs import GpuSpec, MemoryBreakdown, ModelSpec, TrainConfig
from advisor.units import GIB

BF16 = 2
FP32 = 4
CUDA_CONTEXT_BYTES = int(0.75 * GIB)  # CUDA context + cuBLAS/NCCL workspaces, measured ~0.5-1 GiB
FRAGMENTATION = 0.05  # caching-allocator slack on top of the transient allocations
OFFLOAD_BUFFER_FACTOR = 1.5  # DeepSpeed estimate_zero3_model_states_mem_needs additional_buffer_factor


def data_parallel_size(cfg: TrainConfig) -> int:
    return cfg.num_gpus // (cfg.tp * cfg.pp)


def num_nodes(cfg: TrainConfig, gpu: GpuSpec) -> int:
    return -(-cfg.num_gpus // gpu.gpus_per_node)


def optimizer_bytes_per_param(cfg: TrainConfig) -> int:
    """fp32 master + Adam m, v (bf16-mixed) or bf16 m, v (bf16-pure)."""
    return 12 if cfg.precision == "bf16-mixed" else 4


def activation_bytes_per_token_per_layer(m: ModelSpec) -> int:
    """Korthikanti et al. 2022 Table 2 without the 5as/h term and without dropout masks, generalised:
    norms 2 x 2h; attention 2h (QKV input) + 2q (Q) + 4kv (K, V) + 2q (attention output = o_proj input);
    MLP 2h (input) + 2f + 2f (plain: GELU input and output) or + 6f (gated: gate, up, act*up)."""
    h = m.hidden_size
    q = m.num_heads * m.head_dim_effective
    kv = m.num_kv_heads * m.head_dim_effective
    norms = 2 * BF16 * h
    attn = BF16 * (h + 2 * q + 2 * kv)
    mlp_one = BF16 * (h + (3 if m.ffn_kind == "gated" else 2) * m.ffn_size)
    mlp = BF16 * h + m.experts_per_token * (mlp_one - BF16 * h)
    return norms + attn + mlp


def activation_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Activations per GPU for one micro-batch. Megatron splits them by tp (sequence parallel) and pp."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    per_layer = activation_bytes_per_token_per_layer(m) * tokens
    layers_here = m.num_layers / cfg.pp
    if cfg.activation_checkpointing:
        act = layers_here * BF16 * m.hidden_size * tokens + per_layer
    else:
        act = layers_here * per_layer
    if cfg.strategy == "megatron":
        # 1F1B keeps up to pp micro-batches in flight on the first stage: pp * (L/pp) layers' worth.
        act = act * min(cfg.pp, max(cfg.grad_accum, 1)) / cfg.tp
    return int(act)


def logits_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """bf16 logits + fp32 upcast for the loss + fp32 gradient of the logits: 10 bytes per vocab entry.
    Chunked cross-entropy (torchtune) upcasts one of ``loss_chunks`` chunks at a time."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    return int(tokens * m.vocab_size * (BF16 + (FP32 + FP32) / cfg.loss_chunks) / cfg.tp)


def gathered_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Unsharded working set of FSDP / ZeRO-3: the largest unit (a decoder layer or the embedding /
    output head) with its bf16 params and grads before the reduce-scatter, plus the next layer's
    bf16 params being prefetched."""
    if cfg.strategy not in ("fsdp", "zero3", "zero3-offload", "zero3-offload-all"):
        return 0
    unit = max(layer_params(m), m.vocab_size * m.hidden_size)
    return unit * (BF16 + BF16) + layer_params(m) * BF16


def memory_breakdown(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> MemoryBreakdown:
    n = param_count(m)
    dp = data_parallel_size(cfg)
    model_split = cfg.tp * cfg.pp
    weights_full = BF16 * n / model_split
    if cfg.trainable == "lora":
        trainable = lora_trainable_params(m, cfg.lora_rank)
        grads_full = FP32 * trainable
        optim_full = 12 * trainable
    else:
        grads_full = BF16 * n / model_split
        optim_full = optimizer_bytes_per_param(cfg) * n / model_split

    s = cfg.strategy
    if s in ("single", "ddp"):
        weights, grads, optim = weights_full, grads_full, optim_full
    elif s == "zero2":
        weights, grads, optim = weights_full, grads_full / dp, optim_full / dp
    elif s in ("fsdp", "zero3"):
        weights, grads, optim = weights_full / dp, grads_full / dp, optim_full / dp
    elif s == "zero3-offload":
        weights, grads, optim = weights_full / dp, grads_full / dp, 0
    elif s == "zero3-offload-all":
        weights, grads, optim = 0, grads_full / dp, 0
    else:  # megatron with the distributed optimizer: fp32 main grads, optimizer sharded over dp
        weights = weights_full
        grads = FP32 * n / model_split if cfg.trainable == "full" else grads_full
        optim = optim_full / dp

    acts = activation_bytes(m, cfg)
    logits = logits_bytes(m, cfg)
    gathered = gathered_bytes(m, cfg)
    # Model states are allocated once; the caching allocator's slack grows with the transient buffers.
    overhead = CUDA_CONTEXT_BYTES + FRAGMENTATION * (acts + logits + gathered)
    return MemoryBreakdown(
        weights=int(weights), gradients=int(grads), optimizer=int(optim), activations=int(acts),
        logits=int(logits), gathered_layer=int(gathered), overhead=int(overhead),
    )


def cpu_bytes_per_node(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> int:
    """Host memory that offload needs on each node (0 without offload)."""
    if cfg.strategy not in ("zero3-offload", "zero3-offload-all"):
        return 0
    n = param_count(m) if cfg.trainable == "full" else lora_trainable_params(m, cfg.lora_rank)
    per_param = 16 + (BF16 if cfg.strategy == "zero3-offload-all" else 0)
    return int(per_param * n * OFFLOAD_BUFFER_FACTOR / num_nodes(cfg, gpu))

