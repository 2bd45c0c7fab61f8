"""step_time's two value objects: defaults are the executor's layout and kernels, frozen, every field documented."""

import ast
import dataclasses
from pathlib import Path

import pytest

from advisor import step_options
from advisor.step_options import EngineKernels, ParallelLayout


def test_defaults_are_what_step_time_priced_before_the_options_were_grouped():
    assert dataclasses.asdict(ParallelLayout()) == {
        "tp_overlap": None, "pp_interleave": 1, "shard_group": None, "dp_sharded": False, "cp": 1, "ep": 1, "etp": None,
        "ep_overlap": 0.0, "pp_layers_off_ends": 0}
    assert dataclasses.asdict(EngineKernels()) == {
        "moe_host_sync": False, "eager_expert_epilogue": False, "recompute_modules": (), "host_optimizer": "deepspeed", "unfused_rope": False,
        "cross_entropy_impl": None, "attention_kernel": "flash", "moe_dispatcher": "alltoall",
        "moe_routing_imbalance": 1.0,
        "dp_overlap_window": False, "grad_reduce_bytes": 2}


def test_they_are_frozen_values():
    layout = ParallelLayout(ep=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.ep = 4  # type: ignore[misc]
    assert layout == ParallelLayout(ep=8) and hash(layout) == hash(ParallelLayout(ep=8))
    assert EngineKernels(recompute_modules=("layernorm",)) == EngineKernels(recompute_modules=("layernorm",))


def test_an_unknown_attention_kernel_or_a_routing_imbalance_below_one_names_the_field():
    with pytest.raises(ValueError, match="attention_kernel"):
        EngineKernels(attention_kernel="sdpa")
    with pytest.raises(ValueError, match="moe_routing_imbalance"):
        EngineKernels(moe_routing_imbalance=0.9)


def test_an_unknown_cross_entropy_impl_names_the_field():
    with pytest.raises(ValueError, match="cross_entropy_impl must be one of native, te or None, got 'fused'"):
        EngineKernels(cross_entropy_impl="fused")
    assert EngineKernels(cross_entropy_impl="te").cross_entropy_impl == "te"


def test_the_validated_names_are_the_ones_the_formulas_price():
    """EngineKernels validates the names once; throughput's tables must price exactly those."""
    from advisor import step_options, throughput
    assert set(throughput.CAUSAL_ATTENTION_TIME_FRACTION) == set(step_options.ATTENTION_KERNELS)
    assert set(throughput.CE_BYTES_PER_LOGIT) == set(step_options.CROSS_ENTROPY_IMPLS)


def test_an_unknown_host_optimizer_names_the_field():
    with pytest.raises(ValueError, match="host_optimizer must be one of deepspeed, torch-fused, got 'adam'"):
        EngineKernels(host_optimizer="adam")


@pytest.mark.parametrize("cls", [ParallelLayout, EngineKernels])
def test_every_field_has_its_meaning_in_a_docstring(cls):
    tree = ast.parse(Path(step_options.__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__).body
    documented = {a.target.id for a, doc in zip(body, body[1:])
                  if isinstance(a, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                  and isinstance(doc.value.value, str) and doc.value.value.strip()}
    assert documented == {f.name for f in dataclasses.fields(cls)}
