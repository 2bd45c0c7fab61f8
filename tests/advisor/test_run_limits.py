"""advisor/run_limits.py: what `sftplan run` refuses beyond its strategy list, read by the planner and by
executor/preflight.py (tests/executor/test_parallelism.py checks the executor's message is this one)."""
import pytest

from advisor.catalog import load_catalog
from advisor.errors import UserError
from advisor.models import PlanRequest
from advisor.planner import plan
from advisor.run_limits import FULL_SFT_ONLY, UNPACKED_ONLY, run_refusal
from advisor.specs import STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("method", ["full-sft", "lora"])
@pytest.mark.parametrize("packing", [False, True])
def test_refusals_are_exactly_the_full_sft_only_and_unpacked_only_layouts(strategy, method, packing):
    why = run_refusal(strategy, method, packing)
    refused = (strategy in UNPACKED_ONLY and packing) or (strategy in FULL_SFT_ONLY and method == "lora")
    assert (why is not None) == refused
    if why:
        assert why.startswith(f"'{strategy}' runs ")


def test_nothing_forced_is_never_refused():
    assert run_refusal(None, "lora", True) is None


def test_the_planner_refuses_a_request_with_the_same_reason():
    req = PlanRequest.from_dict({"model": "llama-3.1-8b", "dataset": {"examples": 1000}, "method": "lora",
                                 "strategy": "fsdp-tp"})
    with pytest.raises(UserError) as err:
        plan(req, load_catalog())
    assert err.value.field == "strategy" and str(err.value) == "strategy: " + run_refusal("fsdp-tp", "lora", False)
