"""MoE experts under autocast: the expert matmuls run in the autocast dtype, like every other matmul of the step.

transformers 5.x runs the experts of its MoE models (Mixtral, Qwen-MoE, DeepSeek, ...) through
``torch._grouped_mm`` (``experts_implementation="grouped_mm"``, its default; transformers/integrations/moe.py).
That op is on none of autocast's cast lists (pytorch/pytorch#174763), and transformers casts the input to
the *weight's* dtype before calling it. On the executor's bf16-mixed path on one GPU or DDP
(train.setup_model loads fp32 weights; Trainer's ``bf16=True`` makes accelerate autocast the forward to
bf16) the experts therefore ran in fp32 while the rest of the step ran in bf16:

- on CUDA, fp32 inputs miss the bf16 CUTLASS grouped GEMM and take ``_grouped_mm_fallback`` (one fp32
  matmul per expert after a device-to-host copy of the offsets: aten/src/ATen/native/cuda/GroupedBlas.cpp,
  GroupedMMUtils.h), and the expert activations saved for backward are fp32 (twice the bytes the plan's
  precision implies);
- on fake tensors torch 2.13's meta kernel (torch/_meta_registrations.py ``_meta_grouped_mm_common``)
  refuses anything but bf16 ("Expected inputs of BF16 type"), so executor/memtrace.py could not trace it.

``AUTOCAST_GROUPED_MM`` is an experts implementation registered in transformers' ``ExpertsInterface`` that
does for grouped_mm what autocast does for ``F.linear``: while autocast is on and the expert weights are
in another dtype, it hands transformers' own grouped_mm forward the input and the expert weights cast to
the autocast dtype (differentiable casts: the gradients reach the fp32 weights in fp32; the bf16 copies
are saved for backward as autocast's cast weights are). Without autocast, or with weights already in the
autocast dtype (bf16-pure, FSDP2's bf16 gathered parameters, DeepSpeed's bf16 weights) it is transformers'
grouped_mm forward unchanged. The executor selects it for every model loaded with fp32 weights whose
experts support the interface (``use_autocast_experts``); memtrace builds the traced model the same way,
so the estimate models the path the run takes.
"""

from __future__ import annotations

AUTOCAST_GROUPED_MM = "sftplan_autocast_grouped_mm"
# The expert tensors transformers' experts forwards read (concatenated gate+up, or up only; optional biases).
_EXPERT_TENSORS = ("gate_up_proj", "up_proj", "down_proj", "gate_up_proj_bias", "up_proj_bias", "down_proj_bias")


class _CastExperts:
    """The experts module as transformers' forward sees it, with its expert tensors in ``dtype``
    (each cast once per call); every other attribute is the module's own."""

    def __init__(self, module, dtype):
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_dtype", dtype)
        object.__setattr__(self, "_cast", {})

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if name in _EXPERT_TENSORS and value is not None and value.is_floating_point() and value.dtype != self._dtype:
            if name not in self._cast:
                self._cast[name] = value.to(self._dtype)
            return self._cast[name]
        return value


def autocast_grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """transformers' grouped_mm experts forward, with input and expert weights in the autocast dtype while
    autocast is on (the cast autocast applies to F.linear's operands)."""
    import torch
    from transformers.integrations.moe import grouped_mm_experts_forward

    device = hidden_states.device.type
    if not torch.is_autocast_enabled(device):
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    dtype = torch.get_autocast_dtype(device)
    weight = self.gate_up_proj if getattr(self, "has_gate", True) else self.up_proj
    if weight.dtype == dtype:
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    out = grouped_mm_experts_forward(_CastExperts(self, dtype), hidden_states.to(dtype), top_k_index, top_k_weights)
    return out  # in the autocast dtype, as F.linear's output under autocast


def register() -> str:
    """Register the implementation with transformers (idempotent); its name."""
    from transformers.integrations.moe import ExpertsInterface

    ExpertsInterface.register(AUTOCAST_GROUPED_MM, autocast_grouped_mm_experts_forward)
    return AUTOCAST_GROUPED_MM


def has_experts_interface(model) -> bool:
    """The model's experts dispatch through transformers' ExpertsInterface (``@use_experts_implementation``)."""
    can = getattr(model, "_can_set_experts_implementation", None)
    return bool(can and can())


def use_autocast_experts(model) -> str | None:
    """Select ``AUTOCAST_GROUPED_MM`` for a model whose experts support the interface; the implementation
    it replaced (None: the model has no such experts, nothing changed)."""
    if not has_experts_interface(model):
        return None
    before = model.config._experts_implementation
    model.set_experts_implementation(register())
    return before
