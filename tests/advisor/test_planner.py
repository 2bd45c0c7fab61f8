"""The planner on the issue's scenarios (section 5), the tiny model and determinism (search time: benchmarks/latency.py)."""

import json

import pytest

from advisor import rules
from advisor.catalog import load_catalog

from advisor.models import DatasetSpec, OwnedHardware, PlanRequest
from advisor.planfile import to_yaml
from advisor.planner import plan

CAT = load_catalog()


def req(model="llama-3.1-8b", examples=50_000, avg_tokens=512, **kw) -> PlanRequest:
    return PlanRequest(model=model, dataset=DatasetSpec(examples=examples, avg_tokens=avg_tokens), **kw)


def have(spec="h100-sxm:8"):
    gpu, n = spec.split(":")
    return [OwnedHardware(gpu=gpu, count=int(n))]


def ids(p):
    return {f.rule_id for f in p.findings}


def test_8b_5k_examples_no_goal_is_lora_citing_under_10k():
    p = plan(req(examples=5_000), CAT)
    assert p.method == "lora"
    f = next(f for f in p.findings if f.rule_id == "method.under-10k")
    assert "5,000" in f.why and f.source == rules.S_LORA_WHEN


def test_8b_50k_lora_below_bar_on_owned_h100s_is_fsdp_on_8():
    p = plan(req(examples=50_000, goals=["lora-below-bar"], have=have()), CAT)
    assert p.method == "full-sft"
    r = p.recommended
    assert (r.gpu, r.num_gpus, r.num_nodes, r.strategy) == ("h100-sxm", 8, 1, "fsdp")
    assert "parallel.fsdp" in ids(p) and "constraints.have" in ids(p)


def test_70b_on_8_owned_h100s_is_zero3_offload_with_host_ram_checked():
    p = plan(req("llama-3.1-70b", examples=200_000, goals=["deep-retask"], have=have(), max_gpus=8), CAT)
    assert p.method == "full-sft"
    r, e = p.recommended, p.estimate
    assert r.gpu == "h100-sxm" and r.num_gpus <= 8 and r.strategy.startswith("zero3-offload")
    host = CAT.gpu("h100-sxm").host_ram_gib_per_node
    assert 0 < e.cpu_memory_per_node_gib <= host
    assert "parallel.zero3-offload" in ids(p)


def test_70b_with_24_gpus_allowed_is_multi_node_without_offload():
    p = plan(req("llama-3.1-70b", examples=200_000, goals=["deep-retask"], have=have(), max_gpus=24), CAT)
    r = p.recommended
    # multi-node layouts without offload: FSDP / ZeRO-3 over all nodes, HSDP, or FSDP x TP (the estimate's cheapest)
    assert r.strategy in ("fsdp", "zero3", "hsdp", "fsdp-tp") and r.num_nodes >= 2 and r.num_gpus <= 24
    assert {"parallel.multi-node", "parallel.hsdp", "parallel.fsdp-tp"} & set(ids(p))


def test_no_plan_recommends_a_configuration_inside_the_memory_headroom():
    """The issue's case (70B, 200k examples, 8 owned H100s): the recommendation leaves the 10% margin, and
    the margin is what keeps a tighter configuration out (without it the planner takes one above 90%)."""
    kw = dict(examples=200_000, avg_tokens=1200, goals=["deep-retask"], budget_usd=5000, deadline_hours=48, have=have())
    p = plan(req("llama-3.1-70b", **kw), CAT)
    e = p.estimate
    assert e.memory_per_gpu_gib <= 0.9 * e.hbm_gib and e.memory_spare_gib >= 0.1 * e.hbm_gib - 0.01
    q = plan(req("llama-3.1-70b", memory_headroom=0.0, **kw), CAT)  # without the margin: tiers at 95%+ of the GPU
    assert any(t.fits and t.memory_per_gpu_gib > 0.9 * CAT.gpu(t.gpu).hbm_gib for t in q.tiers)
    # Every tier row that fits leaves the margin; plan.md shows the figure.
    for t in p.tiers:
        if t.fits:
            assert t.memory_per_gpu_gib <= 0.9 * CAT.gpu(t.gpu).hbm_gib
    from advisor.render import to_markdown
    assert "% to spare (10% headroom required)" in to_markdown(p)


def test_memory_headroom_is_bounded():
    with pytest.raises(Exception, match="memory_headroom"):
        req(memory_headroom=0.6)
    with pytest.raises(Exception, match="memory_headroom"):
        req(memory_headroom=-0.1)


def test_405b_is_multi_node_and_megatron_only_with_the_nvidia_stack():
    p = plan(req("llama-3.1-405b", examples=1_000_000, goals=["deep-retask"]), CAT)
    assert p.recommended.num_nodes > 1 and p.recommended.strategy != "megatron"
    assert "parallel.no-megatron" in ids(p)
    q = plan(req("llama-3.1-405b", examples=1_000_000, goals=["deep-retask"], nvidia_stack=True), CAT)
    assert q.recommended.strategy == "megatron" and q.recommended.num_nodes > 1
    assert q.recommended.tp * q.recommended.pp > 1 and "parallel.megatron" in ids(q)


@pytest.mark.parametrize("goal", ["fast-iteration", "lora-cleared-bar"])
def test_lora_goals_choose_lora_whatever_the_data_size(goal):
    p = plan(req(examples=2_000_000, goals=[goal, "deep-retask"]), CAT)
    assert p.method == "lora" and f"method.{goal}" in ids(p)
    assert p.recommended is not None and p.lora is not None  # the LoRA configuration (issue 13)


def test_instruct_base_gets_a_lower_rate_and_the_alignment_warning():
    base = plan(req(goals=["deep-retask"]), CAT)
    inst = plan(req(goals=["deep-retask"], base="instruct"), CAT)
    assert inst.hyperparameters.learning_rate < base.hyperparameters.learning_rate
    assert any("alignment" in w for w in inst.warnings)
    assert not any("alignment" in w for w in base.warnings)


def test_lora_chosen_for_the_budget_but_over_it_too_says_so():
    """Full SFT priced out by the budget falls back to LoRA; when LoRA is over the budget as well, the
    decision says by how much instead of reading like a plan that fits."""
    from advisor.render import decision_line

    p = plan(req(goals=["lora-below-bar"], budget_usd=1.0), CAT)
    assert p.method == "lora" and p.recommended is None
    over = p.lora_alternative.cost_usd - 1.0
    assert over > 0
    assert f"also over the $1.00 budget by ${over:,.2f}" in decision_line(p)
    roomy = plan(req(goals=["lora-below-bar"], budget_usd=6.0), CAT)  # LoRA fits this budget, full SFT does not
    assert roomy.method == "lora" and "also over" not in decision_line(roomy)


def test_budget_below_the_cheapest_option_shows_the_closest_with_the_shortfall():
    p = plan(req(goals=["deep-retask"], method="full-sft", budget_usd=1.0), CAT)
    assert p.recommended is None and p.estimate is None
    c = p.closest
    assert c.cost_usd > 1.0 and c.shortfall_usd == pytest.approx(c.cost_usd - 1.0, abs=0.01)
    assert "budget" in c.why
    cheapest = min(t.cost_usd for t in p.tiers if t.fits)
    assert c.cost_usd == pytest.approx(cheapest, rel=1e-6)
    assert not any(t.meets_constraints for t in p.tiers)


def test_deadline_is_respected():
    free = plan(req(goals=["deep-retask"]), CAT)
    tight = free.estimate.hours / 3
    p = plan(req(goals=["deep-retask"], deadline_hours=tight), CAT)
    if p.recommended:
        assert p.estimate.hours <= tight
    else:
        assert p.closest.shortfall_hours > 0


def test_plan_prices_lora_beside_full_sft():
    p = plan(req(goals=["lora-below-bar"]), CAT)
    la = p.lora_alternative
    assert la.rank == 16 and la.dora and la.cost_usd > 0
    assert la.full_sft_cost_ratio == pytest.approx(p.estimate.cost_usd / la.cost_usd, rel=0.02)


def test_every_tier_has_a_row_and_every_finding_a_source():
    p = plan(req(goals=["deep-retask"]), CAT)
    # every GPU tier; the host cpu tier only when pinned (it is for runs on this machine, priced near 0)
    assert [t.gpu for t in p.tiers] == [g for g in CAT.gpus if CAT.gpus[g].vendor != "cpu"]
    assert "cpu" in CAT.gpus and [t.gpu for t in plan(req(goals=["deep-retask"], gpu="cpu"), CAT).tiers] == ["cpu"]
    for t in p.tiers:
        assert t.fits or t.why_not
    assert all(f.source and f.why for f in p.findings)
    hp = p.hyperparameters
    assert set(hp.chosen_by) >= {"learning_rate", "warmup_ratio", "weight_decay", "epochs"}
    assert 0.01 <= hp.warmup_ratio <= 0.03 and 0.05 <= hp.weight_decay <= 0.1
    assert p.checkpointing.keep_last >= 3 and p.checkpointing.disk_gib > 0
    assert [d.name for d in p.evaluation.deploy_suite][:2] == ["MMLU-Pro", "IFEval"]


def test_forced_full_sft_on_small_data_says_what_it_overrides():
    p = plan(req(examples=3_000, method="full-sft", learning_rate=1e-5), CAT)
    assert p.method == "full-sft"
    assert any(f.overridden and f.rule_id == "method.under-10k" for f in p.findings)
    assert p.hyperparameters.learning_rate == 1e-5
    assert p.hyperparameters.chosen_by["learning_rate"] == "hparams.learning-rate-override"


def test_same_request_gives_byte_identical_plans():
    r = req("llama-3.1-70b", examples=200_000, goals=["deep-retask"])
    assert to_yaml(plan(r, CAT)) == to_yaml(plan(r, CAT))


@pytest.fixture()
def tiny_model(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 300,
        "max_position_embeddings": 256, "tie_word_embeddings": False}))
    return str(d)


@pytest.mark.parametrize("strategy", ["fsdp", "ddp", "zero3"])
def test_tiny_local_model_plans_without_error(tiny_model, strategy):
    gpu = next(iter(CAT.gpus))
    p = plan(req(tiny_model, examples=64, avg_tokens=40, method="full-sft", gpu=gpu, num_gpus=2, strategy=strategy,
                 max_seq_len=128), CAT)
    assert p.recommended is not None, p.tiers
    assert (p.recommended.num_gpus, p.recommended.strategy) == (2, strategy)
    assert p.estimate.total_steps >= 1 and p.estimate.steps_per_epoch >= 1
    assert p.request.model_path is None or p.request.model_path == tiny_model


def test_tiny_model_full_search_with_default_seq_len(tiny_model):
    p = plan(req(tiny_model, examples=10, avg_tokens=8), CAT)
    assert p.recommended is not None and p.estimate.total_steps >= 1
    assert p.hyperparameters.max_seq_len <= 256


def test_tiny_runs_keep_significant_digits_in_step_time_and_hours(tmp_path):
    """A tiny model's step time is microseconds: the plan must not round it (or the hours) to zero."""
    from advisor.planner import _round_small
    from advisor.render import to_markdown

    assert _round_small(0.000423456) == 0.000423
    assert _round_small(12.34567) == 12.346  # values of 1 and above keep the usual 3 decimals
    assert _round_small(0.5) == 0.5 and _round_small(0.0) == 0.0

    cfg = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 512, "max_position_embeddings": 256,
           "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = plan(req(model=str(tmp_path / "config.json"), examples=1_200, avg_tokens=24, method="full-sft"), CAT)
    assert 0 < p.estimate.step_time_s < 0.01
    assert p.estimate.hours > 0
    md = to_markdown(p)
    assert " 0.00 s each" not in md and f"{p.estimate.step_time_s:.3g} s each" in md


def test_cost_on_owned_gpus_is_labelled_as_on_demand_equivalent():
    from advisor.render import to_markdown

    owned = plan(req(goals=["lora-below-bar"], have=have("h100-sxm:8")), CAT)
    assert owned.recommended.gpu == "h100-sxm"
    assert "at on-demand rates (the run uses owned GPUs" in to_markdown(owned)
    rented = plan(req(goals=["lora-below-bar"]), CAT)
    assert "owned GPUs" not in to_markdown(rented)


def test_tier_rows_carry_breakdown_capacity_and_binding_constraint():
    from advisor.catalog import load_catalog
    from advisor.models import PlanRequest
    from advisor.planner import plan

    cat = load_catalog()
    p = plan(PlanRequest(model="llama-3.1-70b", dataset={"examples": 50_000, "avg_tokens": 1024}, deadline_hours=2,
                         max_gpus=8, goals=["deep-retask"]), cat)  # full SFT: a LoRA plan's tiers are LoRA's
    for row in p.tiers:
        assert row.hbm_gib == cat.gpu(row.gpu).hbm_gib
        if row.fits:
            assert abs(sum(row.memory_breakdown_gib.values()) - row.memory_per_gpu_gib) < 0.05
            assert (row.binding_constraint is None) == row.meets_constraints
            if not row.meets_constraints:
                assert row.binding_constraint.startswith("deadline ")
        else:
            assert row.binding_constraint and len(row.binding_constraint) < 40 and row.why_not
    pcie = next(r for r in p.tiers if r.gpu == "h100-pcie")  # offload needs more host RAM than the node has
    assert not pcie.fits and pcie.binding_constraint.startswith("host RAM ") and "host RAM" in pcie.why_not
    a10g = next(r for r in p.tiers if r.gpu == "a10g")
    assert a10g.binding_constraint.startswith("GPU memory ") and sum(a10g.memory_breakdown_gib.values()) > a10g.hbm_gib
    if p.recommended:
        rec_row = next(r for r in p.tiers if r.gpu == p.recommended.gpu)
        assert rec_row.memory_breakdown_gib == p.estimate.memory_breakdown_gib


def test_the_renting_finding_names_the_method_that_does_not_fit_the_owned_gpus():
    """At 65k tokens full SFT fits the owned 8 x H100 (zero3-sp) and LoRA fits none of them (its layouts have no
    sequence parallel): the LoRA plan's constraints.have finding says LoRA, not full SFT."""
    p = plan(req(examples=2000, avg_tokens=65536, max_seq_len=65536, have=have()), load_catalog())
    assert p.method == "lora" and p.full_sft_alternative.gpu == "h100-sxm"
    renting = [f.why for f in p.findings if f.rule_id == "constraints.have"]
    assert renting == ["LoRA fits none of the owned GPUs (h100-sxm:8)"]
