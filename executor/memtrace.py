"""Traced memory of one training step of the real transformers model, on fake tensors (no GPU, no weights).

`sftplan estimate ... --trace` and benchmarks/memory_trace.py call ``trace()``. What is traced is the
path the executor takes (executor/train.py, translate.py, accelerate under Trainer):

- dtypes: the checkpoint is loaded in fp32 for bf16-mixed and in bf16 for bf16-pure
  (train.setup_model); Trainer's bf16=True makes accelerate wrap ``model.forward`` in
  ``autocast(bf16)`` and convert the bf16 outputs (the logits) to fp32 (``convert_outputs_to_fp32``);
  FSDP2 through accelerate upcasts the sharded parameters to fp32 and gathers them in bf16
  (``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16)``), whatever the plan's precision.
- the optimizer: Trainer's default ``adamw_torch_fused`` (torch AdamW, fused=True: moments like the
  parameter, no per-step temporaries), ``clip_grad_norm_(1.0)``, ``zero_grad(set_to_none=True)``;
  Adam's moments appear at the first ``step()``, so two steps are traced and the second one counts.
- activation checkpointing: ``model.gradient_checkpointing_enable()`` (single, ddp: what
  Trainer calls) or the non-reentrant ``checkpoint_wrapper`` on every decoder layer (fsdp: accelerate's
  FSDP2 path).
- attention: an attention function that saves what the GPU's flash / memory-efficient kernels save
  (q, k and v with their own kv heads, the output, the fp32 logsumexp); Gemma 2 keeps transformers'
  eager attention (soft-capping; its config says sdpa is unsupported) and MPT its own ALiBi attention,
  both saving the b x heads x s x s scores, as on a GPU.
- the loss: transformers' own (labels = input ids: every token trained; the fp32 upcast inside).

Not traced: CUDA context, cuBLAS workspaces, NCCL buffers, the caching allocator's fragmentation
(reserved vs allocated); DeepSpeed ZeRO (zero2/zero3: the model-state shard per rank is counted from
the built model's parameters, activations are those of a single GPU); padded batches (the mask SDPA
materialises); Megatron.
MoE experts: the executor's own experts implementation (executor/moe.py: transformers' grouped_mm with
the input and expert weights cast to bf16 under autocast) wherever the weights are loaded in fp32, so
bf16-mixed single / DDP traces the bf16 expert matmuls the run does. Tracing runs on fake CPU tensors (sizes are exact; CPU autocast stands in
for CUDA autocast with the same cast rules for matmuls).

Tracing cost is per op, not per FLOP: ``trace()`` traces ``depth`` decoder layers and a second,
deeper model, and extrapolates every figure linearly to the real depth (``extrapolated=True``);
benchmarks/memory_trace.py checks that against full-depth traces. The shallower depth is at least 2
(3 under FSDP): below it one-off effects (MPT's returned attention weights, FSDP's prefetch filling up)
change the peak's make-up and would be extrapolated as per-layer costs. FSDP's gathered set is read at
the deeper trace, never extrapolated.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from advisor.units import GIB

TRACED_STRATEGIES = ("single", "ddp", "fsdp")
STATE_ONLY_STRATEGIES = ("zero2", "zero3", "zero3-offload", "zero3-offload-all")
NOT_TRACED = ("CUDA context, cuBLAS/NCCL workspaces and allocator fragmentation (reserved vs allocated) "
              "are not tensors and are not traced")


@dataclass
class TraceResult:
    """Bytes per rank. Groups: model_states (params + grads + optimizer, + buffers), transient
    (activations, logits, loss buffers, temporaries), gathered (FSDP's unsharded params/grads and
    collective buffers). ``*_max`` figures are each group's own maximum over the step; ``peak`` is the
    highest total at one moment, with ``peak_by_category`` what made it up at that moment."""

    model: str
    strategy: str
    world_size: int
    precision: str
    seq_len: int
    micro_batch_size: int
    activation_checkpointing: bool
    num_layers: int
    traced_layers: tuple[int, ...]
    extrapolated: bool
    peak: int
    peak_phase: str
    peak_by_category: dict[str, int]
    model_states_max: int
    transient_max: int
    gathered_max: int
    attention: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the model's config


def _preset_hf_config(spec, num_layers: int):
    """A transformers config with the preset's architecture (the family's own config class)."""
    import transformers as T

    h, heads, kv = spec.hidden_size, spec.num_heads, spec.num_kv_heads
    common = dict(hidden_size=h, intermediate_size=spec.ffn_size, num_hidden_layers=num_layers,
                  num_attention_heads=heads, num_key_value_heads=kv, vocab_size=spec.vocab_size,
                  tie_word_embeddings=spec.tied_embeddings, max_position_embeddings=spec.max_context, use_cache=False)
    if spec.head_dim:
        common["head_dim"] = spec.head_dim
    fam = spec.family
    if fam in ("llama", "generic"):
        return T.LlamaConfig(**common)
    if fam == "mistral":
        return T.MistralConfig(**common, sliding_window=None)
    if fam == "mixtral":
        return T.MixtralConfig(**common, num_local_experts=spec.num_experts, num_experts_per_tok=spec.experts_per_token,
                               sliding_window=None)
    if fam == "qwen2":
        return T.Qwen2Config(**common)
    if fam == "gemma":
        return T.GemmaConfig(**common, hidden_activation="gelu_pytorch_tanh")
    if fam == "gemma2":
        return T.Gemma2Config(**common, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                              query_pre_attn_scalar=spec.head_dim_effective, sliding_window=4096)
    if fam == "phi3":
        return T.Phi3Config(**common, pad_token_id=None)  # its default pad id 32000 may lie outside a small vocab
    if fam == "stablelm":
        common.pop("head_dim", None)
        return T.StableLmConfig(**common)
    if fam == "gpt_neox":
        common.pop("num_key_value_heads")
        common.pop("head_dim", None)
        return T.GPTNeoXConfig(**common, rotary_pct=0.25, use_parallel_residual=True)
    if fam == "mpt":
        return T.MptConfig(d_model=h, n_heads=heads, n_layers=num_layers, expansion_ratio=spec.ffn_size // h,
                           vocab_size=spec.vocab_size, max_seq_len=spec.max_context, use_cache=False,
                           tie_word_embeddings=spec.tied_embeddings)
    raise ValueError(f"family {fam!r} cannot be traced")


def hf_config(spec, num_layers: int):
    """The model's transformers config at ``num_layers`` decoder layers: the user's config.json as
    given (only the depth changed), else the preset's architecture. A config transformers refuses (its
    strict dataclass validators) is a ValueError of one line: the validator's own reason."""
    from huggingface_hub.errors import StrictDataclassError

    try:
        with _quiet():  # its warnings (a pad id outside the vocabulary) come back as the build's one-line error
            return _hf_config(spec, num_layers)
    except (StrictDataclassError, TypeError, KeyError) as exc:
        cause = exc.__cause__ or exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ValueError(f"transformers refuses the config: {reason}") from None


def _hf_config(spec, num_layers: int):
    import transformers as T

    if spec.source == "config.json":
        path = Path(spec.name)
        raw = json.loads((path / "config.json" if path.is_dir() else path).read_text(encoding="utf-8"))
        raw = {k: v for k, v in raw.items() if k not in ("architectures", "auto_map", "transformers_version")}
        kind = raw.pop("model_type")
        raw["n_layers" if kind == "mpt" else "num_hidden_layers"] = num_layers
        raw["use_cache"] = False
        return T.AutoConfig.for_model(kind, **raw)
    return _preset_hf_config(spec, num_layers)


def _depth(cfg) -> int:
    return getattr(cfg, "num_hidden_layers", None) or cfg.n_layers


# --------------------------------------------------------------------------- flash-like attention


def _register_flash_like():
    """An attention function whose saved tensors are those of the GPU's flash kernel (GQA-native:
    k and v keep their own heads), calling the flash op's fake kernel for the output and logsumexp."""
    import torch
    from transformers import AttentionInterface

    class _Flash(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, scale):  # q: b, h, s, d; k, v: b, kv, s, d
            groups = q.shape[1] // k.shape[1]
            kr = k.repeat_interleave(groups, dim=1) if groups > 1 else k
            vr = v.repeat_interleave(groups, dim=1) if groups > 1 else v
            out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(q, kr, vr, 0.0, True, False, scale=scale)
            out = out.transpose(1, 2).contiguous()  # the kernel writes b, s, h, d
            ctx.save_for_backward(q, k, v, out, lse)
            ctx.scale = scale
            return out

        @staticmethod
        def backward(ctx, grad_out):
            q, k, v, out, lse = ctx.saved_tensors
            b, s, h, d = out.shape
            groups = h // k.shape[1]
            dq = torch.empty_like(q)
            dkr = torch.empty(b, h, s, d, dtype=k.dtype, device=k.device)
            dvr = torch.empty_like(dkr)
            del grad_out
            dk = dkr.view(b, k.shape[1], groups, s, d).sum(2) if groups > 1 else dkr
            dv = dvr.view(b, v.shape[1], groups, s, d).sum(2) if groups > 1 else dvr
            return dq, dk, dv, None

    def flash_like(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        if torch.is_autocast_enabled("cpu"):  # SDPA is on autocast's lower-precision list: q, k, v go in as bf16
            dtype = torch.get_autocast_dtype("cpu")
            query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
        return _Flash.apply(query, key, value, scale), None

    AttentionInterface.register("sftplan_kernel_saves", flash_like)
    return "sftplan_kernel_saves"


# --------------------------------------------------------------------------- one traced step


def _build(spec, num_layers: int, precision: str, strategy: str):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = hf_config(spec, num_layers)
    kind = cfg.model_type
    if kind == "gemma2":
        attn = "eager"  # transformers: "sdpa does not support softcapping"
    elif kind == "mpt":
        attn = "eager"  # MPT's own ALiBi attention
    else:
        attn = _register_flash_like()
    fp32_params = precision == "bf16-mixed" or strategy == "fsdp"  # FSDP2 via accelerate upcasts to fp32
    torch.set_default_dtype(torch.float32 if precision == "bf16-mixed" else torch.bfloat16)
    try:
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    finally:
        torch.set_default_dtype(torch.float32)
    if fp32_params and precision == "bf16-pure":
        for p in model.parameters():
            p.data = p.data.float()
    if precision == "bf16-mixed":  # as train.setup_model: MoE experts in the autocast dtype (executor/moe.py)
        from executor.moe import use_autocast_experts

        use_autocast_experts(model)
    model.config.use_cache = False
    return model, attn


def _decoder_layers(model):
    """The decoder layers (what translate.py's transformer_layer_cls_to_wrap names): model.model.layers,
    gpt_neox.layers or transformer.blocks."""
    for base in ("model", "gpt_neox", "transformer"):
        inner = getattr(model, base, None)
        for name in ("layers", "blocks"):
            layers = getattr(inner, name, None) if inner is not None else None
            if layers is not None and len(layers):
                return list(layers)
    raise ValueError("no decoder layers found")


_PG_WORLD: list[int] = []


def _fake_process_group(world_size: int):
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        if _PG_WORLD and _PG_WORLD[0] == world_size:
            return
        dist.destroy_process_group()
    dist.init_process_group("fake", rank=0, world_size=world_size, store=FakeStore())
    _PG_WORLD[:] = [world_size]


# forward + loss, backward down to the second decoder layer, the first layer's backward (and the embedding's),
# optimizer step: the peak moment of each is extrapolated. The end of backward is its own phase: at 2-4 traced
# layers the start of backward (activations + logits) peaks, at full depth the end can (every gradient and the
# first layer's recompute): MPT-7B bf16-pure at 1024 x 8 with checkpointing, full depth 52.8 GiB at the end
# of backward, where extrapolating the backward phase as one gave 49.5.
PHASES = ("fwd", "bwd", "bwd_end", "opt")
PHASE_NAMES = {"fwd": "forward + loss", "bwd": "backward", "bwd_end": "end of backward", "opt": "optimizer step"}


# The smallest depth the per-layer extrapolation starts from: below it the peak moment's make-up still
# changes with depth, and a one-off step extrapolates as if every layer had it.
# MPT at 8k with checkpointing: +4.5 GiB from 1 to 2 layers (the previous layer's returned bf16 attention
# weights beside the next layer's scores), +0.5 GiB per layer after (its autocast weight copies + input).
MIN_DEPTH = 2
# FSDP: Mixtral's gathered set grows from 1 to 3 layers, then stays (11.3 GiB at 3, 4 and 6).
FSDP_MIN_DEPTH = 3


def _is_gathered(name: str) -> bool:
    """FSDPMemTracker's categories of the unsharded working set."""
    return "unsharded" in name or "all_gather" in name or "reduce" in name


class _Maxes:
    """Each group's maximum over time, and the highest total of each phase (forward+backward, optimizer)
    with its make-up, updated after every op (MemTracker keeps only the one peak moment)."""

    def __init__(self):
        self.model_states = self.transient = self.gathered = 0
        self.phase = "fwd"
        self.phase_peak: dict[str, int] = {ph: 0 for ph in PHASES}
        self.phase_transient: dict[str, int] = {ph: 0 for ph in PHASES}
        self.phase_snap: dict[str, dict[str, int]] = {ph: {} for ph in PHASES}

    def update(self, snap: dict) -> None:
        states = trans = gathered = 0
        for key, v in snap.items():
            name = str(key).split(".")[-1].lower()
            if name == "total":
                continue
            if _is_gathered(name):
                gathered += v
            elif "param" in name or "grad" in name or "opt" in name or "buf" in name:
                states += v
            else:
                trans += v
        self.model_states = max(self.model_states, states)
        self.transient = max(self.transient, trans)
        self.gathered = max(self.gathered, gathered)
        self.phase_transient[self.phase] = max(self.phase_transient[self.phase], trans)
        total = states + trans + gathered
        if total > self.phase_peak[self.phase]:
            self.phase_peak[self.phase] = total
            self.phase_snap[self.phase] = {str(k).split(".")[-1].lower(): int(v) for k, v in snap.items()
                                           if str(k) != "Total"}


class _NoHook:
    def remove(self) -> None:
        pass


_NO_HOOK = _NoHook()


def _trace_once(spec, *, num_layers: int, precision: str, strategy: str, world_size: int, seq_len: int,
                micro_batch_size: int, activation_checkpointing: bool, grad_accum: int, adapt=None) -> dict:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    maxes = _Maxes()
    mesh = None
    if strategy == "fsdp":  # the mesh is built outside fake mode (it reads real rank tensors)
        from torch.distributed.device_mesh import init_device_mesh

        _fake_process_group(world_size)
        mesh = init_device_mesh("cpu", (world_size,))
    with FakeTensorMode(allow_non_fake_inputs=True):
        model, attn = _build(spec, num_layers, precision, strategy)
        layers = _decoder_layers(model)
        if adapt is not None:  # trace_lora: peft's adapter attached (the layers stay the same modules)
            model = adapt(model, activation_checkpointing)
        if strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, output_dtype=torch.bfloat16)
            if activation_checkpointing:
                from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
                    CheckpointImpl, apply_activation_checkpointing, checkpoint_wrapper)

                layer_cls = type(layers[0])
                apply_activation_checkpointing(
                    model, checkpoint_wrapper_fn=lambda m: checkpoint_wrapper(m, checkpoint_impl=CheckpointImpl.NO_REENTRANT),
                    check_fn=lambda m: isinstance(m, layer_cls))
                layers = [m for m in model.modules() if type(m).__name__ == "CheckpointWrapper"]
            for layer in layers:
                fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=True)
            fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=True)
        elif activation_checkpointing:  # what Trainer calls (gradient_checkpointing_enable, renamed in 5.x)
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]  # Trainer's optimizer: every trainable one
        opt = torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.0, fused=True)  # Trainer's default
        if strategy == "fsdp":
            from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

            tracker = FSDPMemTracker(model, opt)
        else:
            from torch.distributed._tools.mem_tracker import MemTracker

            tracker = MemTracker()
            tracker.track_external(model, opt)
        for p in model.parameters():  # frozen (LoRA's base): MemTracker would hook a gradient it never gets
            if not p.requires_grad:  # ("cannot register a hook on a tensor that doesn't require gradient")
                tracker._param_to_grad_hook_handles[p] = (_NO_HOOK, _NO_HOOK)
        original = tracker._update_peak_stats

        def _update(peak_state, _orig=original):
            _orig(peak_state)
            for dev_snap in tracker._curr_mem_snap.values():
                if counting[0]:
                    maxes.update(dev_snap)

        tracker._update_peak_stats = _update
        counting = [False]
        split_end = strategy != "fsdp" and len(layers) >= 2
        if split_end:  # the second layer's last gradient lands: the first layer's backward begins
            second = [p for p in layers[1].parameters() if p.requires_grad]
            landed: set[int] = set()

            def _landed(p, _landed_ids=landed, _n=len(second)):
                _landed_ids.add(id(p))
                if len(_landed_ids) == _n and maxes.phase == "bwd":
                    maxes.phase = "bwd_end"

            for p in second:
                p.register_post_accumulate_grad_hook(_landed)
        elif strategy == "fsdp" and len(layers) >= 2:  # FSDP2 has no accumulate-grad hook on its sharded
            # parameters: the gradient reaching the first layer's output marks its backward's start instead
            # (without this split FSDP's backward was one phase, extrapolated from depths where the loss's
            # backward peaks: Llama 3.1 8B FSDP x 8 at 1024 x 2 read 17.08 GiB, its first layer's backward 18.80)
            def _first_layer_out(module, args, output):
                t = output[0] if isinstance(output, (tuple, list)) else output
                if isinstance(t, torch.Tensor) and t.requires_grad:
                    t.register_hook(lambda g: setattr(maxes, "phase", "bwd_end") if maxes.phase == "bwd" else None)

            layers[0].register_forward_hook(_first_layer_out)
        ids = torch.randint(0, min(spec.vocab_size, 1000), (micro_batch_size, seq_len))
        with tracker:
            for step in range(2):  # Adam's moments exist from the first step on: the second is the steady state
                if step == 1:
                    tracker.reset_mod_stats()
                    tracker._peak_mem.clear()
                    tracker._peak_mem_snap.clear()
                    counting[0] = True
                for _ in range(min(grad_accum, 2)):
                    maxes.phase = "fwd"
                    with torch.autocast("cpu", dtype=torch.bfloat16):  # accelerate's autocast around forward
                        out = model(input_ids=ids, labels=ids)
                    logits32 = out.logits.float()  # accelerate's convert_outputs_to_fp32
                    loss = out.loss
                    del out, logits32
                    maxes.phase = "bwd"
                    if split_end:
                        landed.clear()
                    loss.backward()
                    del loss
                maxes.phase = "opt"
                torch.nn.utils.clip_grad_norm_(trainable, 1.0, foreach=False)
                opt.step()
                opt.zero_grad(set_to_none=True)
    out = {"model_states_max": maxes.model_states, "transient_max": maxes.transient, "gathered_max": maxes.gathered,
           "attention": attn}
    for ph in PHASES:
        out[f"peak_{ph}"] = maxes.phase_peak[ph]
        out[f"transient_{ph}"] = maxes.phase_transient[ph]
        out[f"snap_{ph}"] = maxes.phase_snap[ph]
    return out


def trace(spec, *, precision: str = "bf16-mixed", strategy: str = "single", world_size: int = 1, seq_len: int = 2048,
          micro_batch_size: int = 1, activation_checkpointing: bool = True, grad_accum: int = 1,
          depth: int | None = 1, _adapt=None) -> TraceResult:
    """Trace one steady-state training step. ``depth``: trace ``depth`` and ``2 * depth`` decoder layers
    and extrapolate per layer to the model's depth (None: trace the full depth). ``_adapt``: trace_lora's."""
    if strategy not in TRACED_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not traced (traced: {', '.join(TRACED_STRATEGIES)})")
    kw = dict(precision=precision, strategy=strategy, world_size=world_size if strategy == "fsdp" else 1,
              seq_len=seq_len, micro_batch_size=micro_batch_size, activation_checkpointing=activation_checkpointing,
              grad_accum=grad_accum, adapt=_adapt)
    full = spec.num_layers
    notes = [NOT_TRACED]
    if depth is not None:  # extrapolate from depths where every per-step effect has settled (see MIN_DEPTH)
        depth = max(depth, FSDP_MIN_DEPTH if strategy == "fsdp" else MIN_DEPTH)
    if strategy == "ddp":
        notes.append("ddp: traced as one replica (DDP's gradient buckets, ~25 MiB each, are not traced)")
    if depth is None or 2 * depth >= full:
        a = b = _trace_once(spec, num_layers=full, **kw)
        layers, extrap, scale = (full,), False, 0.0
    else:
        a = _trace_once(spec, num_layers=depth, **kw)
        b = _trace_once(spec, num_layers=2 * depth, **kw)
        layers, extrap, scale = (depth, 2 * depth), True, (full - depth) / depth

    def ext(x, y):
        return int(round(x + (y - x) * scale))

    # Each phase's own peak is extrapolated (the moment that peaks can change with depth: at 1-2 layers
    # the loss's backward may dominate, at full depth the forward's autocast copies of every layer).
    # FSDP's gathered set (unsharded parameters and gradients, all-gather and reduce-scatter buffers) is a
    # working set of a few units in flight, not a per-layer cost: it is read at the deeper trace, never
    # extrapolated (extrapolating it from 1 and 2 layers charged Mixtral every layer's experts: 75 GiB).
    r = {"model_states_max": ext(a["model_states_max"], b["model_states_max"]), "gathered_max": b["gathered_max"]}
    r["transient_max"] = max(ext(a[f"transient_{ph}"], b[f"transient_{ph}"]) for ph in PHASES)

    def gathered_at(x, ph):
        return sum(v for c, v in x[f"snap_{ph}"].items() if _is_gathered(c))

    phases = {ph: ext(a[f"peak_{ph}"] - gathered_at(a, ph), b[f"peak_{ph}"] - gathered_at(b, ph)) + gathered_at(b, ph)
              for ph in PHASES}
    phase = max(phases, key=phases.get)
    r["peak"], r["peak_phase"] = phases[phase], PHASE_NAMES[phase]
    sa, sb = a[f"snap_{phase}"], b[f"snap_{phase}"]
    by_cat = {c: (sb.get(c, 0) if _is_gathered(c) else ext(sa.get(c, 0), sb.get(c, 0))) for c in set(sa) | set(sb)}
    # The make-up extrapolates only when both depths peak at the same moment (no negative part).
    r["peak_by_category"] = {c: v for c, v in by_cat.items() if v} if min(by_cat.values(), default=0) >= 0 else {}
    if not r["peak_by_category"]:
        notes.append("the peak falls at different moments at the two traced depths: its make-up is not extrapolated")
    r["attention"] = a["attention"]
    return TraceResult(model=spec.name, strategy=strategy, world_size=kw["world_size"], precision=precision,
                       seq_len=seq_len, micro_batch_size=micro_batch_size,
                       activation_checkpointing=activation_checkpointing, num_layers=full, traced_layers=layers,
                       extrapolated=extrap, notes=notes, **r)


LORA_TRACED_STRATEGIES = ("single", "ddp")


def trace_lora(spec, *, rank: int = 16, alpha: int = 32, dropout: float = 0.1, dora: bool = True,
               target_modules: list[str] | str = "all-linear", seq_len: int = 2048, micro_batch_size: int = 1,
               activation_checkpointing: bool = True, grad_accum: int = 1, strategy: str = "single",
               depth: int | None = 1) -> TraceResult:
    """Trace one steady-state LoRA / DoRA step on the executor's LoRA path (executor/train.py setup_model,
    executor/lora.py wrap): the base in bf16 (frozen), peft's adapter attached with ``get_peft_model``
    (peft upcasts the adapter to fp32), ``enable_input_require_grads`` under checkpointing, Trainer's
    bf16 autocast, fused AdamW over the adapter only. Single GPU / DDP (one replica)."""
    if strategy not in LORA_TRACED_STRATEGIES:
        raise ValueError(f"LoRA strategy {strategy!r} is not traced (traced: {', '.join(LORA_TRACED_STRATEGIES)})")

    def adapt(model, checkpointing):
        import gc
        from unittest import mock

        import torch
        from peft import LoraConfig, TaskType, get_peft_model

        if checkpointing:
            model.enable_input_require_grads()
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=alpha, lora_dropout=dropout,
                            use_dora=dora, target_modules=target_modules, bias="none")
        # peft moves each new adapter module to its base layer's device and dtype (Module.to), which fake
        # parameters refuse ("Couldn't swap": they carry a weakref). Everything is on the one (fake CPU) device
        # already, and the adapter is built in fp32, the dtype peft's autocast_adapter_dtype gives it right
        # after (DoRA's magnitude, made in the base's bf16, is upcast by a tensor .to, which works): the
        # module moves are skipped while the adapter is attached.
        with mock.patch.object(torch.nn.Module, "to", lambda self, *a, **k: self):
            model = get_peft_model(model, config)
        # Fake tensors only: FakeTensorMode's dispatch of some ops DoRA's forward uses (its slow path, a
        # self-referencing closure) leaves reference cycles that keep the op's outputs alive until the garbage
        # collector runs, so when they go depends on the collector's timing (+-1 GiB on one traced layer).
        # On real tensors the same step leaves no cycle (checked with gc.DEBUG_SAVEALL), so each adapted
        # layer collects its own after its forward (and its recompute), as a real step frees them at once.
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in model.modules():
            if isinstance(module, BaseTunerLayer):
                module.register_forward_hook(lambda *_: gc.collect() and None)
        return model

    return trace(spec, precision="bf16-pure", strategy=strategy, seq_len=seq_len, micro_batch_size=micro_batch_size,
                 activation_checkpointing=activation_checkpointing, grad_accum=grad_accum, depth=depth,
                 _adapt=adapt)


def model_state_shard_bytes(spec, *, strategy: str, world_size: int, precision: str) -> dict[str, int]:
    """DeepSpeed ZeRO model states per rank, counted from the built model's parameter tensors
    (bf16 weights 2, bf16 grads 2, fp32 master + Adam moments 12 bytes/param: DeepSpeed's bf16 optimizer;
    zero2 shards grads and optimizer, zero3 also the weights; offload moves the optimizer and the gradient shard to the host)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        model, _ = _build(spec, spec.num_layers if spec.num_layers <= 4 else 1, "bf16-pure", "single")
        if spec.num_layers > 4:
            one = sum(p.numel() for p in _decoder_layers(model)[0].parameters())
            n = sum(p.numel() for p in model.parameters()) + (spec.num_layers - 1) * one
        else:
            n = sum(p.numel() for p in model.parameters())
    del torch
    w = world_size
    weights = 2 * n // (w if strategy != "zero2" else 1)
    if strategy == "zero3-offload-all":
        weights = 0
    grads = 0 if strategy.startswith("zero3-offload") else 2 * n // w  # offload keeps the gradient shard on the host
    optim = 0 if strategy.startswith("zero3-offload") else 12 * n // w
    return {"params": n, "weights": weights, "gradients": grads, "optimizer": optim}


@contextlib.contextmanager
def _quiet():
    import logging

    level = logging.getLogger("transformers").level
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger("transformers").setLevel(level)
