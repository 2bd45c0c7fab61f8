"""Bytes per GPU, component by component. Pure functions of (model, config, GPU); integers out.

Sources:
- The executor's path, traced on fake tensors (executor/memtrace.py; benchmarks/memory_trace.py compares
  this module with the traces per component group): what each transformers family's code saves for
  backward, the dtype policy (fp32 weights + autocast for bf16-mixed, bf16 for bf16-pure, fp32 shards
  under accelerate's FSDP2), Trainer's fused AdamW and gradients set to None every step.
- Model states: ZeRO (Rajbhandari et al. 2020): DeepSpeed bf16 = 2 (bf16 weights) + 2 (bf16 grads) +
  12 (fp32 master, momentum, variance) bytes/param; stage 2 shards grads and optimizer, stage 3 all three.
- Activations: Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
  Models") counted term by term on the real code (flash attention keeps no s x s scores; eager
  attention, which transformers runs for Gemma 2 and MPT, does), without dropout masks (dropout 0).
- The peak is a moment, not a sum (transient_moments): loss, start of backward, recompute, optimizer step.
- FSDP / ZeRO-3 gather one unit at a time and prefetch the next; FSDP2 keeps the root unit (embedding,
  output head) gathered through the step. DeepSpeed's estimate_zero3_model_states_mem_needs counts
  4 bytes x largest layer for the same.
- What no tensor shows (CUDA context, cuBLAS workspaces, NCCL buffers, allocator fragmentation): each a
  published figure per tier and strategy, data/memory_overheads.yaml via advisor/memory_overheads.py.
- CPU offload (ZeRO-Offload, Ren et al. 2021): fp32 master + moments + fp32 grads = 16 bytes/param
  on the host, x1.5 pinned/buffer factor as DeepSpeed's own estimator uses. No gradient shard stays on the
  GPU, with or without the parameters offloaded: DeepSpeed ZeRO-3's grad_partitions_flat_buffer is
  allocated on the optimizer's device, the host under offload_optimizer (deepspeed/runtime/zero/stage3.py,
  0.19.8: `self.device = ... cpu` if offload_optimizer; partition_grads copies each reduce-scattered
  partition into it), and FSDP2's CPUOffloadPolicy copies the sharded gradient to the host after each
  reduce-scatter; only the layer-sized unsharded / reduce-scatter buffers of gathered_bytes remain. torchtune's Llama 3.1 70B full
  fine-tune with fsdp_cpu_offload on 8 A100 peaks at 13.9 GiB per GPU (README table at 30b8519), where
  a resident bf16 gradient shard alone would be 16.4 GiB.
"""

from __future__ import annotations

import dataclasses

from advisor.architecture import attention_params, layer_params, lora_trainable_params, param_count
from advisor.memory_overheads import overhead_bytes
from advisor.specs import GpuSpec, MemoryBreakdown, ModelSpec, TrainConfig

BF16 = 2
FP32 = 4
OFFLOAD_BUFFER_FACTOR = 1.5  # DeepSpeed estimate_zero3_model_states_mem_needs additional_buffer_factor


def data_parallel_size(cfg: TrainConfig) -> int:
    return cfg.num_gpus // (cfg.tp * cfg.pp)


def num_nodes(cfg: TrainConfig, gpu: GpuSpec) -> int:
    return -(-cfg.num_gpus // gpu.gpus_per_node)


def ulysses_degree(strategy: str, num_gpus: int, gpus_per_node: int) -> int:
    """zero3-sp's Ulysses sequence-parallel degree: the GPUs of a node (the executor's num_gpus / num_nodes,
    executor/translate.py sequence_parallel_size), so the all-to-alls stay on NVLink (DeepSpeed-Ulysses,
    arXiv 2309.14509 sec. 3: intra-node all-to-all); 1 for every other strategy."""
    if strategy != "zero3-sp":
        return 1
    return max(1, min(num_gpus, gpus_per_node))


def plan_ulysses_degree(strategy: str, num_gpus: int, num_nodes: int) -> int:
    """ulysses_degree of a plan or request: its GPUs per node are num_gpus / num_nodes (what the executor's launch
    gives each node), not the catalog's node size."""
    return ulysses_degree(strategy, num_gpus, num_gpus // max(1, num_nodes))


FSDP_LIKE = ("fsdp", "hsdp", "fsdp-tp")  # FSDP2 through accelerate / transformers: sharded fp32 states


def shard_group_size(cfg: TrainConfig, gpus_per_node: int | None) -> int:
    """Ranks one copy of the model states is sharded over: HSDP shards inside a node and replicates across
    nodes (transformers' DistributedConfig: dp_replicate_size = nodes, fsdp_size x tp_size = GPUs per node);
    fsdp-tp shards each tensor-parallel slice over the data-parallel ranks (num_gpus / tp); the others over
    every data-parallel rank."""
    dp = data_parallel_size(cfg)
    if cfg.strategy == "hsdp" and gpus_per_node:
        return max(1, min(dp, gpus_per_node))
    return dp


def _vocab_split(cfg: TrainConfig) -> int:
    """Megatron splits the logits over tp; transformers' tp_plan gathers the LM head's output
    (``colwise_gather_output``), so fsdp-tp holds the full vocabulary on every rank."""
    return cfg.tp if cfg.strategy == "megatron" else 1


def optimizer_bytes_per_param(cfg: TrainConfig) -> int:
    """fp32 master + Adam m, v (bf16-mixed) or bf16 m, v (bf16-pure)."""
    return 12 if cfg.precision == "bf16-mixed" else 4


# --------------------------------------------------------------------------- what the executor's path holds
#
# Checked against traced steps of the real transformers models (executor/memtrace.py,
# benchmarks/memory_trace.py). The executor loads fp32 weights for bf16-mixed and bf16 for bf16-pure;
# accelerate runs the forward under autocast(bf16); FSDP2 through accelerate upcasts the sharded
# weights to fp32 and gathers them in bf16 (so FSDP holds 16 bytes/param sharded whatever the
# precision, and computes like bf16-pure); DeepSpeed keeps bf16 weights + fp32 master and moments.


def _autocast_fp32_weights(cfg: TrainConfig) -> bool:
    """fp32 weights under autocast: the residual stream, norms and rotary run in fp32 and autocast
    makes a bf16 copy of every matmul weight (kept by the autograd graph)."""
    return cfg.precision == "bf16-mixed" and cfg.strategy in ("single", "ddp") and cfg.trainable == "full"


def matmul_params_per_layer(m: ModelSpec) -> int:
    """Weights autocast casts in one decoder layer (every matmul weight: attention and every expert)."""
    from advisor.architecture import attention_params, mlp_params_per_expert

    router = m.hidden_size * m.num_experts if m.num_experts > 1 else 0
    return attention_params(m) + m.num_experts * mlp_params_per_expert(m) + router


def layer_activation_bytes_per_token(m: ModelSpec, mixed: bool, attention_side: bool = False) -> int:
    """What the autograd graph of one decoder layer keeps per token, as the transformers code saves it.

    Attention with the flash / memory-efficient kernels: q and k after rotary, v, the output (bf16)
    and the fp32 logsumexp. RMSNorm (Llama-style) keeps its fp32 upcast input, the normalised tensor
    and (bf16-pure) its bf16 output; Gemma's RMSNorm computes the weight in fp32 too. Under autocast
    with fp32 weights (``mixed``) the residual stream is fp32 and every consumer linear casts the
    norm's fp32 output to bf16 for itself (autocast caches only leaf tensors). Gated MLP: gate, act,
    up and the product (8 f bytes), plain MLP: the up projection and the activation (4 f). Fused
    projections (Phi-3 qkv/gate_up, GPT-NeoX and MPT qkv) keep their whole output alive through the
    views. Eager attention (Gemma 2: soft-capping; MPT: ALiBi) is counted in ``eager_scores_bytes``.
    ``attention_side``: only what exists by the attention's softmax (its norm, q, k, v, the output).
    """
    h, f, fam = m.hidden_size, m.ffn_size, m.family
    q = m.num_heads * m.head_dim_effective
    kv = m.num_kv_heads * m.head_dim_effective
    lse = FP32 * m.num_heads
    layer_norm = fam in ("gpt_neox", "mpt")
    fused = fam in ("phi3", "gpt_neox", "mpt")
    gemma_norm = fam in ("gemma", "gemma2")

    def pre_norm(consumers: int) -> int:
        if layer_norm:  # torch LayerNorm keeps its input (+ mean/rstd); autocast runs it in fp32
            return (FP32 * h + BF16 * h * consumers) if mixed else (BF16 * h + BF16 * h)
        if mixed:  # fp32 input + fp32 normalised; each consumer casts the fp32 output
            return FP32 * h + FP32 * h + BF16 * h * consumers
        return FP32 * h + (FP32 if gemma_norm else BF16) * h + BF16 * h

    attn_in = 1 if fused else 3
    if fam == "gpt_neox":  # parallel residual: both LayerNorms read the same (saved once) input
        norms = (FP32 * h + 2 * BF16 * h) if mixed else (BF16 * h + 2 * BF16 * h)
        attn_norm = norms
    else:
        attn_norm = pre_norm(attn_in)
        norms = attn_norm + pre_norm(1 if fused else 2)
    if fam == "gemma2":  # post-attention and post-feedforward norms: fp32 upcast + normalised, both kept
        norms += 2 * (FP32 * h + FP32 * h)
    if fam == "mpt":  # ALiBi eager attention: fused qkv output (kept by the q, k, v views), the output
        attn = BF16 * (q + 2 * kv) + BF16 * q
    elif fam == "gemma2":  # eager: q, k and v repeated to every head, the output
        attn = BF16 * (3 * q) + BF16 * q
    elif fused:  # the fused qkv output stays alive through v's view; rotary makes new q and k
        attn = BF16 * (q + 2 * kv) + BF16 * (q + kv) + BF16 * q + lse
    else:
        attn = BF16 * (q + kv) + BF16 * kv + BF16 * q + lse
    if m.ffn_kind == "gated":
        expert = 4 * BF16 * f
    else:
        expert = 2 * BF16 * f
    if m.num_experts > 1:  # each routed copy: gathered input, the expert's MLP, its output x routing weight
        mlp = m.experts_per_token * (BF16 * h + expert + BF16 * h) + (BF16 * h if mixed else 0)
    else:
        mlp = expert
    if attention_side:
        return attn_norm + attn
    return norms + attn + mlp


def layer_backward_bytes_per_token(m: ModelSpec) -> int:
    """The gradients in flight inside one decoder layer's backward at its largest moment (beside what the
    layer saved), per token: the MLP's backward holds the gradients of its product, its activation and
    its up projection at once (three bf16 f-sized tensors: the mul's backward makes two from the first;
    a plain MLP two). MoE: per routed copy, plus the routed copy's input and output gradients (h-sized).
    Traced (executor/memtrace.py, Mixtral 8x7B with checkpointing): 1.50 GiB at 8192 tokens = 6f + 3h
    bytes per routed copy, which the recompute moment lacked (-18% single, -27% FSDP before)."""
    h, f = m.hidden_size, m.ffn_size
    mlp = (3 if m.ffn_kind == "gated" else 2) * BF16 * f
    if m.num_experts > 1:
        return m.experts_per_token * (mlp + 2 * BF16 * h)
    return mlp


def eager_scores_bytes_per_sequence(m: ModelSpec, seq_len: int) -> int:
    """b x heads x s x s tensors one layer keeps with eager attention (per sequence): Gemma 2 (tanh
    output, fp32 softmax, its bf16 cast: 8 bytes), MPT (fp32 softmax and its bf16 cast: 6 bytes)."""
    per = {"gemma2": 8, "mpt": 6}.get(m.family, 0)
    return per * m.num_heads * seq_len * seq_len


def _scores(m: ModelSpec, cfg: TrainConfig) -> int:
    """Eager attention's s x s tensors of one layer for the micro-batch (none on a flash-attention stack)."""
    if cfg.attention == "flash":
        return 0
    return eager_scores_bytes_per_sequence(m, cfg.seq_len) * cfg.micro_batch_size


def layer_input_bytes_per_token(m: ModelSpec, mixed: bool) -> int:
    """With activation checkpointing a layer keeps only its input: the residual stream (fp32 under
    autocast with fp32 weights)."""
    return (FP32 if mixed else BF16) * m.hidden_size


def activation_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Saved activations of every layer for one micro-batch (the moment backward starts)."""
    if cfg.strategy == "megatron":
        return _megatron_activation_bytes(m, cfg)
    mixed = _autocast_fp32_weights(cfg)
    tokens = cfg.micro_batch_size * cfg.seq_len
    if cfg.activation_checkpointing:
        return m.num_layers * layer_input_bytes_per_token(m, mixed) * tokens
    per_token = layer_activation_bytes_per_token(m, mixed)
    if cfg.strategy == "fsdp-tp":  # Korthikanti et al. 2022 (tensor parallel without sequence parallel): what
        # the norms and the column-parallel linears read stays whole on every rank (2 norm inputs, 2 norm outputs:
        # their 10sbh term, with no dropout masks in these models); the attention / MLP insides are split by tp
        whole = min(per_token, 4 * layer_input_bytes_per_token(m, mixed))
        per_token = whole + (per_token - whole) / cfg.tp
    per_layer = per_token * tokens + _scores(m, cfg) / (cfg.tp if cfg.strategy == "fsdp-tp" else 1)
    return int(m.num_layers * (per_layer + _lora_layer_bytes(m, cfg)))


def _lora_layer_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """What the adapters keep for backward in one layer (DoRA, dropout on): advisor/lora_plan.py."""
    if cfg.trainable != "lora":
        return 0
    from advisor.lora_plan import lora_layer_saved_bytes

    return lora_layer_saved_bytes(m, cfg.lora_rank, cfg.micro_batch_size * cfg.seq_len)


def recompute_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """With checkpointing: one layer's full activations while it is recomputed in backward."""
    if not cfg.activation_checkpointing:
        return 0
    mixed = _autocast_fp32_weights(cfg)
    tokens = cfg.micro_batch_size * cfg.seq_len
    return layer_activation_bytes_per_token(m, mixed) * tokens + _scores(m, cfg) + _lora_layer_bytes(m, cfg)


def autocast_copy_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Autocast's bf16 copy of every matmul weight (decoder layers and the output head), made when the
    weights are fp32 (bf16-mixed on one GPU or DDP). Without checkpointing the graph keeps them until
    each layer's backward; with it they live in autocast's cache until the forward (and loss) ends.
    MoE experts are cast by executor/moe.py, not by autocast's cache: with checkpointing their copies
    go with the layer's other forward tensors, so only the attention's and the router's stay."""
    if not _autocast_fp32_weights(cfg):
        return 0
    per_layer = matmul_params_per_layer(m)
    if cfg.activation_checkpointing and m.num_experts > 1:
        from advisor.architecture import mlp_params_per_expert

        per_layer -= m.num_experts * mlp_params_per_expert(m)
    return BF16 * (m.num_layers * per_layer + m.vocab_size * m.hidden_size)


def _loss_bytes_per_entry(m: ModelSpec, cfg: TrainConfig) -> tuple[float, float]:
    """(forward, backward) bytes per logit entry of transformers' loss: forward = bf16 logits + fp32
    upcast + fp32 log-softmax; backward = saved log-softmax + its gradient + the input gradient (fp32).
    Gemma 2's final soft-capping keeps its tanh output (bf16). Chunked cross-entropy upcasts one chunk."""
    c = cfg.loss_chunks
    cap = BF16 if m.family == "gemma2" else 0
    return BF16 + cap + (FP32 + FP32) / c, cap + 3 * FP32 / c


def logits_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """The loss buffers at their largest (backward of the log-softmax)."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    fwd, bwd = _loss_bytes_per_entry(m, cfg)
    return int(tokens * m.vocab_size * max(fwd, bwd) / _vocab_split(cfg))


def gathered_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Unsharded working set of FSDP / ZeRO-3, bf16, at its largest moment of the step: either the end
    of backward (the root unit: embedding, untied output head and final norm, which FSDP2 keeps gathered
    through the step, with its unsharded gradient, plus two decoder layers in flight), or, FSDP2, the
    backward of a middle layer: its unsharded parameters and gradients, its reduce-scatter buffer and the
    next layer's prefetched all-gather (four layer-sized buffers) beside the root's parameters. The
    traced step (executor/memtrace.py at 3-6 layers) shows both: Llama 3.1 8B's root-dominated set
    (4.73 GiB = 2 roots + 2 layers), Mixtral's expert-dominated one (11.3 GiB = root + 4 layers).
    hsdp is FSDP2 on a 2-D mesh (the same set); fsdp-tp gathers only this rank's tensor-parallel slice."""
    if cfg.strategy not in ("fsdp", "hsdp", "fsdp-tp", "zero3", "zero3-offload", "zero3-offload-all"):
        return 0
    root, layer = _root_params(m), layer_params(m)
    end_of_backward = BF16 * 2 * root + BF16 * 2 * layer
    if cfg.strategy not in FSDP_LIKE:  # DeepSpeed (not traced): the end-of-backward set
        return end_of_backward
    tp = cfg.tp if cfg.strategy == "fsdp-tp" else 1
    return max(end_of_backward, BF16 * root + BF16 * 4 * layer) // tp


def _root_params(m: ModelSpec) -> int:
    from advisor.architecture import embedding_params

    return embedding_params(m) + m.hidden_size


def gathered_bytes_at(m: ModelSpec, cfg: TrainConfig, moment: str) -> int:
    """The gathered set present at a moment: at the loss, the start of backward and in the last layer's
    forward the root's bf16 parameters and one layer's (no unsharded gradient yet); while a layer is
    recomputed in backward all of gathered_bytes; FSDP2 at the end of backward, with every sharded
    gradient present, only the root's reduce-scatter input (it runs last) or the first layer's
    parameters, gradients and reduce-scatter buffer. Traced (Pythia 6.9B at 6 layers, FSDP x 8): the
    moments with 80%+ of the gradients hold the root's reduce-scatter buffer and nothing else gathered;
    charging them the whole set over-estimated the peak by 12%. DeepSpeed (not traced): the whole set."""
    full = gathered_bytes(m, cfg)
    if not full or moment == "optimizer step":
        return 0
    tp = cfg.tp if cfg.strategy == "fsdp-tp" else 1
    if moment in ("loss", "backward start", "last layer forward"):
        return BF16 * (_root_params(m) + layer_params(m)) // tp
    if moment == "backward end" and cfg.strategy in FSDP_LIKE:
        return BF16 * max(_root_params(m), 3 * layer_params(m)) // tp
    if moment in ("recompute", "layer weight gradients") and cfg.strategy in FSDP_LIKE:
        # Inside a layer's backward: the root's parameters, this layer's, the next layer's prefetched
        # all-gather and the previous layer's reduce-scatter buffer. The unsharded gradients are not here
        # yet: until each unit's post-backward hook they are autograd's outputs, counted in those moments'
        # transient bytes (the layer's in "layer weight gradients", the head's in fsdp_head_gradient_bytes).
        # Traced (MPT-7B and Mistral 7B FSDP x 8, the backward's peak): root + 3 layer-sized buffers.
        return BF16 * (_root_params(m) + 3 * layer_params(m)) // tp
    return full


def _megatron_activation_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Megatron-LM (not traced): Korthikanti et al. 2022, split by tp (sequence parallel) and pp; 1F1B
    keeps up to pp micro-batches in flight on the first stage."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    per_layer = layer_activation_bytes_per_token(m, False) * tokens
    layers_here = m.num_layers / cfg.pp
    act = layers_here * BF16 * m.hidden_size * tokens + per_layer if cfg.activation_checkpointing else layers_here * per_layer
    return int(act * min(cfg.pp, max(cfg.grad_accum, 1)) / cfg.tp)


def model_state_bytes(m: ModelSpec, cfg: TrainConfig, gpus_per_node: int | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU on the executor's path. ``gpus_per_node``: HSDP's
    shard group (without it HSDP counts as one group over every rank)."""
    n = param_count(m)
    dp = shard_group_size(cfg, gpus_per_node)
    split = cfg.tp * cfg.pp
    s = cfg.strategy
    if cfg.trainable == "lora":
        trainable = lora_trainable_params(m, cfg.lora_rank)
        weights_full, grads_full, optim_full = BF16 * n / split, FP32 * trainable, 12 * trainable
    elif s in ("single", "ddp"):  # the loaded dtype: fp32 (mixed) or bf16 (pure); Adam's moments like it
        per = FP32 if cfg.precision == "bf16-mixed" else BF16
        weights_full, grads_full, optim_full = per * n, per * n, 2 * per * n
    elif s in ("fsdp", "hsdp"):  # accelerate upcasts FSDP2's sharded parameters to fp32, whatever the precision
        weights_full, grads_full, optim_full = FP32 * n, FP32 * n, 2 * FP32 * n
    elif s == "fsdp-tp":  # the loaded fp32 weights, tp-sliced, then FSDP-sharded over the data-parallel ranks
        weights_full, grads_full, optim_full = FP32 * n / split, FP32 * n / split, 2 * FP32 * n / split
    else:  # DeepSpeed bf16 / Megatron: bf16 weights and grads, fp32 master + moments (ZeRO paper's 2+2+12)
        weights_full = BF16 * n / split
        grads_full = (FP32 if s == "megatron" else BF16) * n / split
        optim_full = optimizer_bytes_per_param(cfg) * n / split
    if s in ("single", "ddp"):
        return int(weights_full), int(grads_full), int(optim_full)
    if s == "zero2":
        return int(weights_full), int(grads_full / dp), int(optim_full / dp)
    if s in ("fsdp", "hsdp", "fsdp-tp", "zero3"):
        return int(weights_full / dp), int(grads_full / dp), int(optim_full / dp)
    if s == "zero3-offload":  # the gradient shard lives on the host with the optimizer (module docstring)
        return int(weights_full / dp), 0, 0
    if s == "zero3-offload-all":  # parameters, gradients and optimizer on the host (module docstring)
        return 0, 0, 0
    return int(weights_full), int(grads_full), int(optim_full / dp)  # megatron, distributed optimizer


def transient_moments(m: ModelSpec, cfg: TrainConfig) -> dict[str, tuple[int, int, bool]]:
    """Moments of one step: name -> (activation bytes, loss-buffer bytes, gradients present).

    The peak is a moment, not a sum: with gradients set to None every step, the loss (end of the
    forward) and the start of backward hold every activation and the logits but no gradients (unless
    earlier micro-batches of the same step left theirs), the end of backward holds every gradient and
    little else, and the optimizer step holds the model states only (fused AdamW: no temporaries)."""
    tokens = cfg.micro_batch_size * cfg.seq_len
    acts = activation_bytes(m, cfg)
    copies = autocast_copy_bytes(m, cfg)
    fwd, bwd = _loss_bytes_per_entry(m, cfg)
    entries = tokens * m.vocab_size / _vocab_split(cfg)
    accumulating = cfg.grad_accum > 1
    moments = {
        "loss": (acts + copies, int(entries * fwd), accumulating),
        "backward start": (acts + (0 if cfg.activation_checkpointing else copies), int(entries * bwd), accumulating),
        "optimizer step": (0, 0, True),
    }
    layer_copy = BF16 * matmul_params_per_layer(m) if copies else 0
    scores_grad = _scores(m, cfg)  # eager attention's backward: the s x s gradients beside the saved scores
    in_flight = layer_backward_bytes_per_token(m) * tokens // (cfg.tp if cfg.strategy == "fsdp-tp" else 1)
    if cfg.activation_checkpointing:  # the last layer recomputed (its weights' bf16 copies made again)
        moments["recompute"] = (acts + recompute_bytes(m, cfg) + layer_copy + scores_grad + in_flight, 0, accumulating)
        # The last layer's attention in the forward: every layer's input, autocast's copies of the weights
        # so far (the head's not yet), the attention's own tensors and eager attention's s x s working set at
        # its softmax (the scores, their masked fp32 copy and the softmax: twice what backward keeps). Traced:
        # MPT-7B bf16-mixed at 4096 x 2, 28.1 GiB, where the loss moment (20.2) was the estimate before.
        head_copy = BF16 * m.vocab_size * m.hidden_size if copies else 0
        attn_side = layer_activation_bytes_per_token(m, _autocast_fp32_weights(cfg), attention_side=True) * tokens
        moments["last layer forward"] = (acts + copies - head_copy + attn_side + 2 * _scores(m, cfg), 0, accumulating)
    # A layer's weight gradients before they leave it: FSDP2 keeps the layer's unsharded bf16 gradients until
    # its reduce-scatter (Mistral/MPT/Pythia at 2048 tokens with checkpointing: -11/-22/-7% without them);
    # on one GPU / DDP only MoE's are large: grouped_mm's backward makes the gradient of the whole stacked
    # gate/up weight (every expert) at once, in bf16 (the bf16 copy's under bf16-mixed) before it is cast or
    # accumulated. Traced (Mixtral 8x7B): with checkpointing, bf16-mixed 7.85 GiB at 4096 tokens and 11.24 at
    # 8192 = every layer's input + the recomputed layer + its bf16 weights + that 1.75 GiB gradient; bf16-pure
    # at 2048 tokens 2.71 GiB (-43% before); FSDP at 2048 tokens 3.85 GiB (the layer's 2.6 GiB of gradients).
    if cfg.strategy in FSDP_LIKE:
        weight_grads = BF16 * layer_params(m) // (cfg.tp if cfg.strategy == "fsdp-tp" else 1)
    elif m.num_experts > 1:
        weight_grads = BF16 * m.num_experts * (2 if m.ffn_kind == "gated" else 1) * m.hidden_size * m.ffn_size
    else:
        weight_grads = 0
    head_grad = fsdp_head_gradient_bytes(m, cfg)  # held from the head's backward to the root's reduce-scatter
    if cfg.activation_checkpointing:
        a, lg, g = moments["recompute"]
        moments["recompute"] = (a + head_grad, lg, g)
    if weight_grads and cfg.activation_checkpointing and cfg.strategy in FSDP_LIKE:
        # FSDP2 with checkpointing: the largest weight-gradient moment is the end of a layer's MLP backward:
        # the MLP's (every expert's and the router's) unsharded gradients, the gradients in flight that made
        # them, what the attention side of the recomputed layer still keeps, and the head's gradient. Traced
        # (Mistral 7B, FSDP x 8, 1024 x 2, the top layer's post-attention norm backward): 3 x 112 MiB MLP
        # gradients + the 250 MiB head gradient + the attention side's tensors; Mixtral 8x7B 3.85 GiB
        # (its experts' 2.6 GiB of gradients). The attention's own gradients come later in the layer's
        # backward (FSDP2 reduce-scatters the whole layer at its end), when the MLP's saved tensors and the
        # gradients in flight are gone: a smaller moment. (The norms' few gradients are counted with the MLP's.)
        tp = cfg.tp if cfg.strategy == "fsdp-tp" else 1
        mlp_grads = BF16 * (layer_params(m) - attention_params(m)) // tp
        attn_side = (layer_activation_bytes_per_token(m, False, attention_side=True) * tokens + _scores(m, cfg)) // tp
        moments["layer weight gradients"] = (acts + attn_side + in_flight + mlp_grads + head_grad, 0, accumulating)
    elif weight_grads:
        held = recompute_bytes(m, cfg) + layer_copy if cfg.activation_checkpointing else copies
        moments["layer weight gradients"] = (acts + held + weight_grads + head_grad, 0, accumulating)
    # The end of backward: (almost) every gradient, the first layer's activations (recomputed, or the last
    # left of the saved ones) and, under FSDP, the whole gathered set.
    first_layer = recompute_bytes(m, cfg) if cfg.activation_checkpointing else acts // max(m.num_layers, 1)
    # (the embedding's backward comes after the first layer's: the larger of the two, not both)
    moments["backward end"] = (max(first_layer + layer_copy + scores_grad + in_flight + head_grad,
                                   _tied_embedding_backward_bytes(m, cfg)), 0, True)
    return moments


def fsdp_head_gradient_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """FSDP2 (full fine-tuning): the output head's unsharded bf16 weight gradient (vocab x h; for tied
    embeddings the shared matrix's), made by the head's backward, the first matmul of backward. The head
    belongs to the root unit, whose post-backward hook (the reduce-scatter of its gradients) runs only
    once the whole backward has finished, so the gradient lives through every decoder layer's backward
    beside their recompute; it is an autograd output until that hook, not one of FSDP's unsharded
    buffers (torch.distributed._tools.fsdp2_mem_tracker counts it as a temporary). Traced (executor/
    memtrace.py with the tracker's tensors listed, MPT-7B FSDP x 8 at 1024 x 2 with checkpointing, the
    top block's recompute): 1.49 GiB of temporaries = the recomputed ALiBi block (its fp32 b x heads x s x s
    tensors and the rest, 1.11 GiB, which the recompute moment counted) + this 394 MiB gradient (50432 x
    4096 bf16), which the estimate lacked (-22% before); Llama 3.1 8B's first-layer backward holds its
    1002 MiB head gradient the same way. At the root's own post-backward the tracker re-tags it as FSDP's
    unsharded gradient (the gathered set's second root). fsdp-tp: the head is column-parallel, each rank
    holds its tp slice."""
    if cfg.strategy not in FSDP_LIKE or cfg.trainable != "full":
        return 0
    return BF16 * m.vocab_size * m.hidden_size // (cfg.tp if cfg.strategy == "fsdp-tp" else 1)


def _tied_embedding_backward_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Tied embeddings, one GPU / DDP: the embedding's backward (the last op of backward) makes a dense
    vocab x h gradient in the weights' dtype and adds it to the one the output head left, out of place:
    two more vocab x h tensors beside the gradient the model states count. Traced (Gemma 2B bf16-mixed at
    2048 tokens, checkpointing): 5.86 GiB of temporaries at the end of backward = 3 x 1.95 GiB (fp32)."""
    if not m.tied_embeddings or cfg.trainable != "full" or cfg.strategy not in ("single", "ddp"):
        return 0
    per = FP32 if cfg.precision == "bf16-mixed" else BF16
    return 2 * per * m.vocab_size * m.hidden_size


def transient_bytes(m: ModelSpec, cfg: TrainConfig) -> int:
    """Activations + logits + loss buffers at their largest moment (benchmarks/memory_trace.py's group)."""
    return max(a + lg for a, lg, _ in transient_moments(m, cfg).values())


def sequence_parallel_local(cfg: TrainConfig, gpus_per_node: int) -> tuple[TrainConfig, int]:
    """zero3-sp: (the ZeRO-3 configuration one GPU runs, the Ulysses degree sp). Each GPU holds seq_len / sp
    tokens of every sequence outside attention (ALST, arXiv 2506.13996 sec. 3.1), so every per-token tensor
    (saved activations, the recomputed layer, logits and loss buffers) is the one of a seq_len / sp sequence;
    the model states are ZeRO-3's over all num_gpus. The attention runs on sdpa (executor/translate.py's
    sp_attn_implementation), which keeps no s x s tensor. sp: ulysses_degree.
    Other strategies: (cfg, 1)."""
    if cfg.strategy != "zero3-sp":
        return cfg, 1
    sp = ulysses_degree(cfg.strategy, cfg.num_gpus, gpus_per_node)
    return dataclasses.replace(cfg, strategy="zero3", seq_len=-(-cfg.seq_len // sp), attention="flash"), sp


def ulysses_buffer_bytes(m: ModelSpec, cfg: TrainConfig, sp: int) -> int:
    """One layer's all-to-all in flight (DeepSpeed-Ulysses, arXiv 2309.14509 sec. 3.1): q, k, v re-laid out from
    seq_len / sp tokens x all heads to seq_len tokens x heads / sp (the same bytes: k, v replicated up to sp heads
    when num_kv_heads < sp) beside their local copies, and the attention output before its all-to-all back (bf16)."""
    if sp <= 1:
        return 0
    local_tokens = cfg.micro_batch_size * -(-cfg.seq_len // sp)
    return BF16 * local_tokens * (2 * m.num_heads + 2 * max(m.num_kv_heads, sp)) * m.head_dim_effective


def memory_breakdown(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> MemoryBreakdown:
    """Bytes per GPU at the step's peak moment, by component (components that never coexist with the
    peak are not added: see transient_moments). Gradients are counted whenever the peak holds them.
    zero3-sp: ZeRO-3 at seq_len / sp per GPU plus the Ulysses all-to-all buffers of one layer in every moment
    with activations (sequence_parallel_local, ulysses_buffer_bytes)."""
    full_cfg = cfg
    cfg, sp = sequence_parallel_local(cfg, gpu.gpus_per_node)
    buffers = ulysses_buffer_bytes(m, full_cfg, sp)
    weights, grads, optim = model_state_bytes(m, cfg, gpu.gpus_per_node)
    best = None
    for name, (acts, logits, with_grads) in transient_moments(m, cfg).items():
        acts += buffers if acts else 0
        g = grads if with_grads else 0
        gathered = gathered_bytes_at(m, cfg, name)
        total = weights + optim + g + acts + logits + gathered
        if best is None or total > best[0]:
            best = (total, g, acts, logits, gathered)
    _, g, acts, logits, gath = best
    # What no tensor shows, each from a published figure per tier and strategy (data/memory_overheads.yaml);
    # model states are allocated once, the caching allocator's slack grows with the transient buffers.
    extra = overhead_bytes(gpu, full_cfg, int(acts + logits + gath))
    return MemoryBreakdown(
        weights=int(weights), gradients=int(g), optimizer=int(optim), activations=int(acts),
        logits=int(logits), gathered_layer=int(gath), **extra,
    )


def cpu_bytes_per_node(m: ModelSpec, gpu: GpuSpec, cfg: TrainConfig) -> int:
    """Host memory that offload needs on each node (0 without offload)."""
    if cfg.strategy not in ("zero3-offload", "zero3-offload-all"):
        return 0
    n = param_count(m) if cfg.trainable == "full" else lora_trainable_params(m, cfg.lora_rank)
    per_param = 16 + (BF16 if cfg.strategy == "zero3-offload-all" else 0)
    return int(per_param * n * OFFLOAD_BUFFER_FACTOR / num_nodes(cfg, gpu))

