"""Fixed per-run time: start-up, weight load, one checkpoint write per epoch; priced into every plan."""
import pytest

from advisor.architecture import param_count, resolve_model
from advisor.cost import STARTUP_S, STORAGE_GB_PER_S_PER_NODE, checkpoint_bytes, overhead_hours
from advisor.models import PlanRequest
from advisor.planner import plan
from advisor.catalog import load_catalog

L70 = resolve_model("llama-3.1-70b")


def test_overhead_counts_startup_load_and_one_checkpoint_per_epoch():
    per_node = STORAGE_GB_PER_S_PER_NODE * 1e9
    expect = (STARTUP_S + 2 * param_count(L70) / per_node + 3 * checkpoint_bytes(L70) / per_node) / 3600
    assert abs(overhead_hours(L70, "bf16-mixed", "full", 3, 1) - expect) < 1e-9
    assert overhead_hours(L70, "bf16-mixed", "full", 3, 2) < overhead_hours(L70, "bf16-mixed", "full", 3, 1)
    assert overhead_hours(L70, "bf16-mixed", "full", 1, 1) < overhead_hours(L70, "bf16-mixed", "full", 3, 1)
    assert overhead_hours(L70, "bf16-mixed", "lora", 3, 1) < overhead_hours(L70, "bf16-mixed", "full", 3, 1)


def test_plan_hours_include_the_overhead_and_cost_follows_hours():
    req = PlanRequest.from_dict({"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1024},
                                      "goals": ["lora-below-bar"], "have": [{"gpu": "h100-sxm", "count": 8}]})
    p = plan(req, load_catalog())
    e, r = p.estimate, p.recommended
    assert e.overhead_hours > STARTUP_S / 3600 * 0.99
    train_h = e.tokens_total / (e.tokens_per_s_per_gpu * r.num_gpus) / 3600
    assert abs(e.hours - (train_h + e.overhead_hours)) / e.hours < 0.01
    gpu = load_catalog().gpu(r.gpu)
    assert abs(e.cost_usd - e.hours * r.num_gpus * gpu.usd_per_gpu_hour) / e.cost_usd < 0.01


def test_a_tier_with_a_measured_start_up_pays_it_instead_of_the_assumption():
    """The cpu tier's startup_s (measured by `sftplan catalog --measure cpu`) replaces the 300 s that GPU jobs
    are assumed to pay, so a tiny CPU run's planned hours are its start-up and training, not five minutes."""
    from advisor.catalog import load_catalog
    from advisor.models import DatasetSpec, PlanRequest
    from advisor.planner import plan

    cpu = load_catalog().gpus["cpu"]
    assert cpu.startup_s is not None and 0 < cpu.startup_s < STARTUP_S
    assert all(g.startup_s is None for g in load_catalog().gpus.values() if g.vendor != "cpu")
    assert overhead_hours(L70, "bf16-mixed", "lora", 1, 1, startup_s=cpu.startup_s) == pytest.approx(
        overhead_hours(L70, "bf16-mixed", "lora", 1, 1) - (STARTUP_S - cpu.startup_s) / 3600)
    p = plan(PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=200, avg_tokens=64), gpu="cpu"), load_catalog())
    assert p.estimate.overhead_hours * 3600 < STARTUP_S / 2
