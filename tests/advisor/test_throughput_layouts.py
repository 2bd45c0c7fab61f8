"""The strategies hsdp and fsdp-tp (issue 14 part 2): what the estimator, the memory model and the planner say
of them, each against the layout it stands for."""
import dataclasses

import pytest

from advisor.architecture import param_count, resolve_model
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.memory import gathered_bytes, gathered_bytes_at, logits_bytes, memory_breakdown, model_state_bytes
from advisor.models import DatasetSpec, PlanRequest
from advisor.planner import plan
from advisor.specs import SpecError, TrainConfig
from advisor.throughput import FIXED_S_PER_LAYER_PER_MICRO_BATCH, step_time, with_network
from advisor import rules
from advisor.step_options import ParallelLayout

CAT = load_catalog()
H100 = CAT.gpus["h100-sxm"]
LLAMA8 = resolve_model("llama-3.1-8b")
LLAMA70 = resolve_model("llama-3.1-70b")


def cfg(**kw):
    base = dict(num_gpus=32, strategy="fsdp", seq_len=4096, micro_batch_size=1, grad_accum=4)
    base.update(kw)
    return TrainConfig(**base)


def test_the_config_refuses_impossible_layouts():
    with pytest.raises(SpecError, match="tp"):
        cfg(strategy="fsdp-tp")  # tp 1 is plain FSDP
    with pytest.raises(SpecError, match="tp"):
        cfg(strategy="hsdp", tp=2)
    with pytest.raises(SpecError, match="pp"):
        cfg(strategy="fsdp-tp", tp=2, pp=2)


def test_hsdp_is_fsdp_sharded_inside_a_node():
    slow = with_network(H100, 400.0)
    hsdp = step_time(LLAMA8, slow, cfg(strategy="hsdp"))
    assert hsdp == step_time(LLAMA8, slow, cfg(), layout=ParallelLayout(shard_group=H100.gpus_per_node))
    assert hsdp.comm_s < step_time(LLAMA8, slow, cfg()).comm_s / 2  # the gathers stay on NVLink
    # its model states are sharded over the 8 GPUs of a node, not the 32 of the job: 4x FSDP's
    full = model_state_bytes(LLAMA8, cfg(), H100.gpus_per_node)
    node = model_state_bytes(LLAMA8, cfg(strategy="hsdp"), H100.gpus_per_node)
    assert [n // f for n, f in zip(node, full)] == [4, 4, 4]
    assert sum(node) == pytest.approx(16 * param_count(LLAMA8) / 8, rel=1e-6)  # fp32 weights, grads, Adam m + v


def test_fsdp_tp_is_the_tp_layout_with_an_fsdp_data_parallel_axis_and_plain_tp():
    c = cfg(strategy="fsdp-tp", tp=8)
    tp = step_time(LLAMA70, H100, c)
    as_megatron = step_time(LLAMA70, H100, cfg(strategy="megatron", tp=8),
                            layout=ParallelLayout(dp_sharded=True, tp_overlap=0.0))
    assert tp.comm_s == as_megatron.comm_s and tp.tp_comm_s == as_megatron.tp_comm_s > 0  # plain TP: exposed
    # plus FSDP2's per-layer collective launches, every micro-batch (as fsdp pays them)
    fixed = FIXED_S_PER_LAYER_PER_MICRO_BATCH * LLAMA70.num_layers * c.grad_accum
    assert tp.compute_s == pytest.approx(as_megatron.compute_s + fixed)


def test_fsdp_tp_memory_splits_the_weights_and_the_gathered_layer_not_the_logits():
    tp = cfg(strategy="fsdp-tp", tp=8, activation_checkpointing=False)
    fsdp = cfg(activation_checkpointing=False)
    assert model_state_bytes(LLAMA70, tp) == pytest.approx(model_state_bytes(LLAMA70, fsdp), rel=1e-6)
    a, b = memory_breakdown(LLAMA70, H100, tp), memory_breakdown(LLAMA70, H100, fsdp)
    # this rank's tensor-parallel slice of FSDP's gathered set, at every moment of the step (each breakdown
    # shows the set at its own peak moment, which can differ between the two layouts)
    for moment in ("loss", "backward start", "last layer forward", "recompute", "backward end"):
        assert gathered_bytes_at(LLAMA70, tp, moment) == pytest.approx(gathered_bytes_at(LLAMA70, fsdp, moment) / 8, rel=1e-3)
    assert gathered_bytes(LLAMA70, tp) == pytest.approx(gathered_bytes(LLAMA70, fsdp) / 8, rel=1e-3)
    assert b.activations / 8 < a.activations < b.activations / 2  # the layer inputs stay whole (no sequence parallel)
    # the LM head's output is gathered (colwise_gather_output): every rank holds the whole vocabulary
    assert logits_bytes(LLAMA70, tp) == logits_bytes(LLAMA70, fsdp)
    assert logits_bytes(LLAMA70, cfg(strategy="megatron", tp=8)) < logits_bytes(LLAMA70, fsdp) / 4


def test_fsdp_tp_needs_tp_to_divide_the_heads_and_stay_in_a_node():
    e = estimate(LLAMA8, H100, cfg(strategy="fsdp-tp", tp=16))
    assert not e.fits and any("exceeds the 8 GPUs" in n for n in e.notes)
    odd = dataclasses.replace(LLAMA8, num_kv_heads=4, num_heads=12)
    e = estimate(odd, H100, cfg(strategy="fsdp-tp", tp=8))
    assert not e.fits and any("does not divide" in n for n in e.notes)


def _ids(p):
    return {f.rule_id: f for f in p.findings}


def test_the_planner_picks_hsdp_for_an_8b_run_across_nodes_and_cites_transformers():
    """A cluster with 400 Gbit/s per node (one NIC): FSDP's all-gathers over every node would wait on the
    network; HSDP keeps them on NVLink."""
    req = PlanRequest(model="llama-3.1-8b", dataset=DatasetSpec(examples=2_000_000, avg_tokens=2048), method="full-sft",
                      deadline_hours=4, gpu="h100-sxm", network_gbit_per_s_per_node=400)
    p = plan(req, CAT)
    assert p.recommended.strategy == "hsdp" and p.recommended.num_nodes > 1
    f = _ids(p)["parallel.hsdp"]
    assert f.source == rules.S_HSDP and f"{p.recommended.num_nodes} nodes" in f.why
    r = p.recommended
    same = dict(num_gpus=r.num_gpus, seq_len=p.hyperparameters.max_seq_len, micro_batch_size=r.micro_batch_size,
                grad_accum=r.grad_accum, activation_checkpointing=r.activation_checkpointing)
    slow = with_network(H100, 400)
    hsdp = estimate(LLAMA8, slow, TrainConfig(strategy="hsdp", **same))
    fsdp = estimate(LLAMA8, slow, TrainConfig(strategy="fsdp", **same))
    assert hsdp.tokens_per_s_per_gpu > fsdp.tokens_per_s_per_gpu  # why it won: the same GPUs, faster


def test_the_planner_takes_fsdp_tp_when_the_team_pins_it_and_names_the_tp():
    req = PlanRequest(model="llama-3.1-70b", dataset=DatasetSpec(examples=200_000, avg_tokens=4096), method="full-sft",
                      gpu="h100-sxm", strategy="fsdp-tp", max_gpus=32)
    p = plan(req, CAT)
    r = p.recommended
    assert r.strategy == "fsdp-tp" and r.tp in (2, 4, 8) and r.num_gpus % r.tp == 0
    f = _ids(p)["parallel.fsdp-tp"]
    assert f.source == rules.S_FSDP_TP and f"tensor parallel {r.tp}" in f.why


def test_lora_plans_never_get_the_layouts():
    req = PlanRequest(model="llama-3.1-70b", dataset=DatasetSpec(examples=200_000, avg_tokens=4096), method="lora",
                      deadline_hours=2)
    p = plan(req, CAT)
    assert p.recommended is None or p.recommended.strategy not in ("hsdp", "fsdp-tp")
