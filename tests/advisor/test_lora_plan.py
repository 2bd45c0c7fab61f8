"""A LoRA plan is complete: its configuration, estimate, hyperparameters, checkpoints and adapter are the
LoRA ones, each chosen by a rule that is among the findings, with full SFT priced beside it."""

import json

import pytest

from advisor import rules
from advisor.architecture import lora_trainable_params, resolve_model
from advisor.catalog import load_catalog
from advisor.lora_plan import (
    TARGET_MODULES, adapter_checkpoint_bytes, lora_activation_bytes_per_token_per_layer,
    lora_weight_copy_bytes_per_layer,
)
from advisor.memory import activation_bytes
from advisor.models import DatasetSpec, PlanRequest
from advisor.planfile import canonical_json, diff
from advisor.planner import plan
from advisor.specs import TrainConfig

CAT = load_catalog()


def _req(model="qwen2.5-7b", examples=8000, **kw):
    return PlanRequest(model=model, dataset=DatasetSpec(examples=examples, avg_tokens=800), **kw)


@pytest.fixture(scope="module")
def lora_and_full():
    return plan(_req(), CAT), plan(_req(method="full-sft"), CAT)


def test_under_10k_lora_plan_is_the_lora_configuration(lora_and_full):
    p, full = lora_and_full
    assert p.method == "lora" and p.lora is not None and p.full_sft_alternative is not None
    m = resolve_model("qwen2.5-7b")
    # the learning rate is QLoRA's for the size, not the full-SFT rate two orders below
    assert p.hyperparameters.learning_rate == rules.lora_learning_rate(p.model.params) == 2e-4
    assert full.hyperparameters.learning_rate == pytest.approx(2e-6)
    lo = p.lora
    assert (lo.rank, lo.alpha, lo.dora, lo.dropout) == (16, 32, True, 0.1)
    assert lo.target_modules == TARGET_MODULES["qwen2"] and lo.trainable_params == lora_trainable_params(m, 16)
    # the estimate is the adapter's: gradients and optimizer states for ~42M parameters, not 7.6B
    mem = p.estimate.memory_breakdown_gib
    assert mem["gradients"] < 0.5 and mem["optimizer"] < 1.0 and mem["weights"] == pytest.approx(2 * p.model.params / 2**30, rel=0.01)
    assert (p.recommended.gpu, p.recommended.strategy) == (p.lora_alternative.gpu, p.lora_alternative.strategy)
    assert p.estimate.cost_usd == pytest.approx(p.lora_alternative.cost_usd, abs=0.01)
    # checkpoints are the adapter and its Adam moments
    assert p.checkpointing.disk_gib_per_checkpoint == pytest.approx(adapter_checkpoint_bytes(m) / 2**30, abs=0.01)
    assert p.checkpointing.disk_gib_per_checkpoint < full.checkpointing.disk_gib_per_checkpoint / 50
    # full SFT priced beside it, from the same estimator as the full-SFT plan
    fa = p.full_sft_alternative
    assert fa.cost_usd == pytest.approx(full.estimate.cost_usd, abs=0.01) and fa.learning_rate == full.hyperparameters.learning_rate
    assert fa.cost_ratio == pytest.approx(fa.cost_usd / p.estimate.cost_usd, rel=0.01)


def test_every_choice_names_a_rule_that_is_a_finding(lora_and_full):
    p, _ = lora_and_full
    ids = {f.rule_id for f in p.findings}
    for field, rule in {**p.hyperparameters.chosen_by, **p.lora.chosen_by}.items():
        assert rule in ids or rule.startswith("request."), (field, rule)
    by_id = {f.rule_id: f for f in p.findings}
    assert "QLoRA" in by_id["hparams.learning-rate"].source and "rank 16 with DoRA" in by_id["lora.rank"].source
    assert "all linear" in by_id["lora.target-modules"].source and "q_proj" in by_id["lora.target-modules"].why
    assert "lora.memory" in ids and by_id["checkpoint.every-epoch"].why.count("adapter") == 1
    assert by_id["parallel.single-gpu"].verdict == p.recommended.strategy
    assert "method.lora-price" not in ids and "method.full-sft-price" in ids


def test_diff_of_the_two_plans_shows_the_decision(lora_and_full):
    p, full = lora_and_full
    changed = {path: (a, b) for path, a, b in diff(p, full)}
    assert changed["method"] == ("lora", "full-sft")
    assert changed["hyperparameters.learning_rate"] == (2e-4, pytest.approx(2e-6))
    assert changed["lora.rank"] == (16, None) and "full_sft_alternative.cost_usd" in changed


def test_lora_learning_rate_override_and_other_families():
    p = plan(_req(learning_rate=1e-4), CAT)
    assert p.hyperparameters.learning_rate == 1e-4
    assert p.hyperparameters.chosen_by["learning_rate"] == "hparams.learning-rate-override"
    big = plan(_req("llama-3.1-70b"), CAT)
    assert big.method == "lora" and big.hyperparameters.learning_rate == 1e-4 and big.lora.dropout == 0.05
    assert big.lora.target_modules == TARGET_MODULES["llama"]


def test_lora_activations_count_what_the_adapters_keep(monkeypatch):
    m = resolve_model("llama-3.1-8b")
    h, f, r = m.hidden_size, m.ffn_size, 16
    q, kv = m.num_heads * m.head_dim_effective, m.num_kv_heads * m.head_dim_effective
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, f), (h, f), (f, h)]
    # mask + lora_A's bf16 input, A output, DoRA base + lora outputs, DoRA's second bf16 copy of the dropped input
    by_hand = sum(3 * i + 2 * r + 4 * o + 2 * i for i, o in shapes)
    assert lora_activation_bytes_per_token_per_layer(m, r) == by_hand
    assert lora_activation_bytes_per_token_per_layer(m, r, dora=False, dropout=False) == 7 * 2 * r
    assert lora_activation_bytes_per_token_per_layer(m, r, dora=False) == sum(3 * i + 2 * r for i, _ in shapes)
    copies = sum(2 * i * o for i, o in shapes)  # DoRA's bf16 weight copies, kept per layer whatever the batch
    assert lora_weight_copy_bytes_per_layer(m) == copies and lora_weight_copy_bytes_per_layer(m, dropout=False) == 0
    lora = TrainConfig(num_gpus=1, strategy="single", seq_len=2048, micro_batch_size=1, grad_accum=1, trainable="lora",
                       activation_checkpointing=False, lora_rank=r)
    with_adapters = activation_bytes(m, lora)
    import advisor.lora_plan

    monkeypatch.setattr(advisor.lora_plan, "lora_layer_saved_bytes", lambda *a, **k: 0)
    assert with_adapters - activation_bytes(m, lora) == (by_hand * 2048 + copies) * m.num_layers


def test_full_sft_plans_hash_as_before():
    full = plan(_req(examples=50_000, goals=["deep-retask"]), CAT)
    assert full.method == "full-sft" and full.lora is None and full.full_sft_alternative is None
    data = json.loads(canonical_json(full))
    assert "lora" not in data and "full_sft_alternative" not in data  # plans approved before these fields verify
