"""Estimates are reused across plans (a TUI keystroke re-plans from them): the result must be the same
plan a cold search gives, and a changed catalog entry must not be served a stale estimate."""
import copy

from advisor.catalog import load_catalog
from advisor.models import PlanRequest
from advisor.plan_search import EstimateCache
from advisor.planner import plan

REQ = {"model": "llama-3.1-8b", "dataset": {"examples": 50_000, "avg_tokens": 1024}, "goals": ["lora-below-bar"]}


def test_warm_plan_equals_cold_plan():
    cat = load_catalog()
    req = PlanRequest.from_dict(REQ)
    session = EstimateCache()
    cold = plan(req, cat, session)
    assert len(session) > 0
    warm = plan(req, cat, session)
    assert warm.plan_sha256 == cold.plan_sha256
    edited = PlanRequest.from_dict({**REQ, "dataset": {"examples": 60_000, "avg_tokens": 1024}})
    after_edit = plan(edited, cat, session)
    assert plan(edited, cat).plan_sha256 == after_edit.plan_sha256  # no cache: a cold search


def test_a_different_gpu_object_is_not_served_a_cached_estimate():
    cat = load_catalog()
    req = PlanRequest.from_dict(REQ)
    session = EstimateCache()
    plan(req, cat, session)
    changed = copy.deepcopy(cat)
    for g in changed.gpus.values():
        g.hbm_gib = g.hbm_gib / 4  # a quarter of the memory: fewer configurations fit
    small = plan(req, changed, session)
    assert plan(req, changed).plan_sha256 == small.plan_sha256
    assert small.plan_sha256 != plan(req, cat, session).plan_sha256


def test_no_module_level_estimate_cache():
    """A plan without a cache leaves nothing behind: the next cold plan searches afresh."""
    import advisor.plan_search as ps

    assert not [k for k, v in vars(ps).items() if isinstance(v, (dict, EstimateCache)) and not k.startswith("__")]
