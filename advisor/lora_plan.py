"""A LoRA plan's own parts: the adapter (rank, alpha, dropout, DoRA, target modules), its learning rate,
its checkpoints, the extra activations LoRA/DoRA keep for backward, and full SFT priced beside it.

Pure (no torch, no printing). planner.plan calls ``lora_plan_updates`` when the method is lora, so
``recommended``, ``estimate``, ``hyperparameters`` and ``checkpointing`` are the LoRA configuration's,
each with its rule and citation. executor/lora.py builds peft's LoraConfig from the ``lora`` block.
"""

from __future__ import annotations

from advisor.architecture import lora_trainable_params
from advisor.models import Finding, FullSftAlternative, LoraSettings
from advisor.rules import S_CHECKPOINT, S_HOUSE, S_LORA_DEFAULT, S_QLORA_LR, _n, lora_learning_rate

S_QLORA_ALL_LINEAR = (
    "QLoRA (Dettmers et al., 2023), section 4: LoRA on all linear transformer block layers is required to "
    "match full finetuning performance"
)
S_QLORA_DROPOUT = "QLoRA (Dettmers et al., 2023), Table 9: LoRA dropout 0.1 for 7B-13B, 0.05 for 33B-65B"
S_LORA_MEMORY = (
    "sftplan memory estimate: frozen bf16 weights; fp32 adapter weights, gradients and Adam moments "
    "(16 B/param); activations per Korthikanti et al. 2022 plus each adapted layer's dropout output and mask, "
    "its rank-r intermediate and, for DoRA (Liu et al. 2024), the base and LoRA outputs its magnitude "
    "gradient needs and the bf16 weight copy of peft's base recompute on the dropped input"
)

RANK = 16
ALPHA_PER_RANK = 2
# All linear projections of each family's decoder layer, by the module names of its transformers code.
TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mixtral": ["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}
BF16, FP32 = 2, 4
ADAPTER_STATE_BYTES_PER_PARAM = FP32 + FP32 + 2 * FP32  # fp32 weight + gradient + Adam m, v
ADAPTER_CHECKPOINT_BYTES_PER_PARAM = FP32 + 2 * FP32  # adapter weights + Adam m, v (the base is not saved)


def _f(rule_id: str, verdict: str, why: str, source: str) -> Finding:
    return Finding(rule_id=rule_id, verdict=verdict, why=why, source=source)


def lora_dropout(params: int) -> float:
    return 0.1 if params <= 20e9 else 0.05


def lora_settings(model, params: int) -> tuple[LoraSettings, list[Finding]]:
    """Rank 16 with DoRA (the guide), alpha 2 x rank, dropout by size, all linear projections of the family."""
    targets = TARGET_MODULES.get(model.family, [])
    dropout = lora_dropout(params)
    trainable = lora_trainable_params(model, RANK, dora=True)
    named = ", ".join(targets) if targets else "every nn.Linear of the decoder layers (peft all-linear)"
    findings = [
        _f("lora.rank", f"r={RANK}, DoRA", f"rank {RANK} with DoRA: {trainable:,} trainable parameters "
           f"({trainable / params:.2%} of {params:,})", S_LORA_DEFAULT),
        _f("lora.alpha", str(RANK * ALPHA_PER_RANK), f"alpha {RANK * ALPHA_PER_RANK} = {ALPHA_PER_RANK} x rank "
           f"(adapter output scaled by alpha/r = {ALPHA_PER_RANK})", S_HOUSE),
        _f("lora.dropout", str(dropout), f"{_n(params)} parameters: LoRA dropout {dropout}", S_QLORA_DROPOUT),
        _f("lora.target-modules", "all linear projections",
           f"{model.family}: {named} (attention and MLP)", S_QLORA_ALL_LINEAR),
    ]
    settings = LoraSettings(rank=RANK, alpha=RANK * ALPHA_PER_RANK, dropout=dropout, dora=True,
                            target_modules=targets, trainable_params=trainable,
                            chosen_by={"rank": "lora.rank", "dora": "lora.rank", "alpha": "lora.alpha",
                                       "dropout": "lora.dropout", "target_modules": "lora.target-modules"})
    return settings, findings


def rule_lora_learning_rate(params: int, override: float | None) -> tuple[float, list[Finding]]:
    lr = lora_learning_rate(params)
    outside = "" if 6.5e9 <= params <= 70e9 else " (the table covers 7B-65B: extrapolated)"
    findings = [_f("hparams.learning-rate", f"{lr:.0e}",
                   f"LoRA learning rate for {_n(params)} parameters: {lr:.0e}{outside}", S_QLORA_LR)]
    if override is not None:
        findings.append(_f("hparams.learning-rate-override", f"{override:.1e}",
                           f"learning_rate {override:g} overrides the rules' {lr:.0e}", "the request (learning_rate)"))
        lr = override
    return lr, findings


def adapter_checkpoint_bytes(model, rank: int = RANK) -> int:
    """One resumable LoRA checkpoint: the adapter in fp32 and its two Adam moments; the frozen base is
    not copied (it is the base model's own files)."""
    return ADAPTER_CHECKPOINT_BYTES_PER_PARAM * lora_trainable_params(model, rank, dora=True)


def rule_lora_checkpointing(model):
    from advisor.models import Checkpointing

    b = adapter_checkpoint_bytes(model)
    gib = b / 2**30
    ck = Checkpointing(keep_last=3, disk_gib_per_checkpoint=round(max(gib, 0.01), 2), disk_gib=round(max(gib, 0.01) * 3, 2))
    why = (f"checkpoint every epoch, keep the last 3: {b / 2**20:,.0f} MiB each (adapter + its optimizer states; "
           f"the frozen base is not copied), {3 * b / 2**20:,.0f} MiB of disk")
    return ck, _f("checkpoint.every-epoch", "every epoch, keep 3", why, S_CHECKPOINT)


def adapted_linear_shapes(m) -> list[tuple[int, int]]:
    """(in, out) of every linear the adapter wraps in one decoder layer: the attention projections and the
    MLP's (each routed expert's, for a mixture of experts)."""
    h, f = m.hidden_size, m.ffn_size
    q = m.num_heads * m.head_dim_effective
    kv = m.num_kv_heads * m.head_dim_effective
    shapes = [(h, q), (h, kv), (h, kv), (q, h)]
    mlp = [(h, f), (h, f), (f, h)] if m.ffn_kind == "gated" else [(h, f), (f, h)]
    return shapes + mlp * m.experts_per_token


def lora_activation_bytes_per_token_per_layer(m, rank: int, dora: bool = True, dropout: bool = True) -> int:
    """What the adapters keep for backward, per token and decoder layer, on top of the base model's.

    Per adapted linear (in -> out), as peft 0.21's lora.Linear runs under bf16 autocast: the input is cast
    to the adapter's fp32, dropout keeps its 1-byte mask and lora_A its bf16 input (2 in, the dropped
    input cast back); the rank-r intermediate lora_A(x) (2 r); with DoRA, the base output and the LoRA
    output (2 x 2 out), which the magnitude's gradient needs (Liu et al. 2024, peft's DoraLinearVariant),
    and, with dropout, a second bf16 copy of the dropped input (2 in): DoRA recomputes the base layer on
    it. The base layer's own input is already counted by Korthikanti's formula. Checked against the
    fake-tensor trace of a LoRA step (benchmarks/lora_memory.py)."""
    total = 0
    for i, o in adapted_linear_shapes(m):
        total += (BF16 * i + i if dropout else 0) + BF16 * rank + (2 * BF16 * o if dora else 0)
        total += BF16 * i if dora and dropout else 0
    return total


def lora_weight_copy_bytes_per_layer(m, dora: bool = True, dropout: bool = True) -> int:
    """DoRA with dropout, per decoder layer and independent of the batch: peft recomputes the base layer
    on the dropped input with the base weight cast to the input's dtype (the adapter's fp32), and bf16
    autocast casts that fp32 weight back for the matmul, keeping the bf16 copy for backward (autocast
    caches only leaf tensors): 2 bytes per adapted weight (13 GiB on Llama-3.1-8B without checkpointing,
    as traced)."""
    if not (dora and dropout):
        return 0
    return sum(BF16 * i * o for i, o in adapted_linear_shapes(m))


def lora_layer_saved_bytes(m, rank: int, tokens: int) -> int:
    """Everything the adapters keep for backward in one decoder layer for ``tokens`` tokens (DoRA, dropout
    on, as the plans use): advisor/memory.py adds it per layer saved, and to the layer being recomputed."""
    return lora_activation_bytes_per_token_per_layer(m, rank) * tokens + lora_weight_copy_bytes_per_layer(m)


def lora_plan_updates(*, req, model, params: int, lora_rec, lora_est, hp, hp_findings: list[Finding],
                      parallel_finding: Finding, full_cand, full_lr: float) -> tuple[dict, list[Finding]]:
    """The Plan fields a LoRA plan replaces, and its findings (which replace the full-SFT hyperparameter ones).

    ``lora_rec``/``lora_est``: the chosen LoRA configuration (Recommended, PlanEstimate) or None.
    ``hp``: Hyperparameters built for the LoRA configuration (batch, warmup, epochs); the learning rate
    is set here. ``full_cand``: the full-SFT candidate (for the alternative) or None."""
    settings, f_lora = lora_settings(model, params)
    lr, f_lr = rule_lora_learning_rate(params, req.learning_rate)
    dropped = ("hparams.learning-rate", "hparams.instruct-alignment", "hparams.lr-too-high")
    f_hp = [f for f in hp_findings if not f.rule_id.startswith(dropped)]
    if req.base == "instruct":
        f_hp.append(_f("hparams.instruct-alignment", "warning",
                       "Instruct base: the adapter can still erode alignment; watch IFEval and HarmBench",
                       "Two orders of magnitude lower than LoRA. Cosine with 1% to 3% warmup. Weight decay 0.05 to "
                       "0.1. Aggressive LR destroys alignment on Instruct bases."))
    hp = hp.replace(**{"learning_rate": lr, "chosen_by": dict(
        hp.chosen_by, learning_rate="hparams.learning-rate-override" if req.learning_rate else "hparams.learning-rate")})
    ck, f_ck = rule_lora_checkpointing(model)
    alt = None
    if full_cand is not None:
        ratio = round(full_cand.cost_usd / lora_est.cost_usd, 2) if lora_est is not None and lora_est.cost_usd > 0 else None
        alt = FullSftAlternative(
            gpu=full_cand.gpu.id, num_gpus=full_cand.num_gpus, strategy=full_cand.strategy,
            memory_per_gpu_gib=round(full_cand.est.memory_per_gpu_bytes / 2**30, 2), hours=round(full_cand.hours, 3),
            cost_usd=round(full_cand.cost_usd, 2), learning_rate=full_lr, cost_ratio=ratio,
            note="every weight trained; the same estimator, at the full-SFT learning rate (two orders below LoRA's)")
    else:
        alt = FullSftAlternative(note="full SFT fits no tier within the GPUs allowed")
    f_mem = _f("lora.memory", "frozen bf16 base + fp32 adapter",
               f"{settings.trainable_params:,} adapter parameters x {ADAPTER_STATE_BYTES_PER_PARAM} B (weights, "
               "gradients, Adam) beside the frozen bf16 weights; activations add the adapters' saved tensors",
               S_LORA_MEMORY)
    updates = {"recommended": lora_rec, "estimate": lora_est, "hyperparameters": hp, "checkpointing": ck,
               "lora": settings, "full_sft_alternative": alt}
    return updates, [*f_lora, f_mem, parallel_finding, *f_lr, *f_hp, f_ck]
