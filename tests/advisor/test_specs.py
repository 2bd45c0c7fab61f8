"""The estimator's dataclasses (advisor/specs.py) keep their rules: types, bounds,
choices, cross-field checks and unknown keys, each failure a ValueError naming the field."""
import dataclasses
import json

import pytest

from advisor.architecture import resolve_model
from advisor.catalog import load_catalog
from advisor.errors import UserError
from advisor.specs import Estimate, GpuSpec, MemoryBreakdown, ModelSpec, SpecError, TrainConfig

CFG = dict(num_gpus=8, strategy="fsdp", seq_len=4096, micro_batch_size=2)


@pytest.mark.parametrize("change, field", [
    (dict(num_gpus=0), "num_gpus"),  # gt=0
    (dict(num_gpus=True), "num_gpus"),  # a bool is not an int
    (dict(seq_len=4096.0), "seq_len"),  # nor is a float
    (dict(seq_len="4096"), "seq_len"),
    (dict(strategy="zero4"), "strategy"),  # Literal
    (dict(precision="fp16"), "precision"),
    (dict(activation_checkpointing=1), "activation_checkpointing"),
    (dict(num_gpus=6, strategy="megatron", tp=4), "num_gpus"),  # cross-field checks
    (dict(tp=2), "tp"),
    (dict(num_gpus=2, strategy="single"), "strategy"),
    (dict(lora_ranks=8), "lora_ranks"),  # extra="forbid"
])
def test_train_config_rejects_and_names_the_field(change, field):
    with pytest.raises(ValueError) as exc:
        TrainConfig.from_dict({**CFG, **change})
    assert isinstance(exc.value, SpecError) and exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")


def test_missing_field_is_named():
    with pytest.raises(SpecError, match="^seq_len: required"):
        TrainConfig.from_dict({k: v for k, v in CFG.items() if k != "seq_len"})


def test_floats_take_ints_and_store_floats():
    gpu = load_catalog().gpu("h100-sxm")
    data = gpu.to_dict() | {"hbm_gib": 80, "inter_node_bandwidth_gbit_per_s": 0}
    spec = GpuSpec.from_dict(data)
    assert type(spec.hbm_gib) is float and spec.hbm_gib == 80.0
    with pytest.raises(SpecError, match="^mfu: must be <= 1"):
        GpuSpec.from_dict(data | {"mfu": 1.5})
    with pytest.raises(SpecError, match="^inter_node_bandwidth_gbit_per_s: must be >= 0"):
        GpuSpec.from_dict(data | {"inter_node_bandwidth_gbit_per_s": -1})


def test_model_spec_cross_field_rules():
    m = resolve_model("mixtral-8x7b")
    with pytest.raises(SpecError, match="^num_heads: must be a multiple of num_kv_heads"):
        dataclasses.replace(m, num_kv_heads=3)
    with pytest.raises(SpecError, match="^experts_per_token: cannot exceed num_experts"):
        dataclasses.replace(m, experts_per_token=9)
    with pytest.raises(SpecError, match="^head_dim: must be > 0"):
        dataclasses.replace(m, head_dim=0)
    assert dataclasses.replace(m, head_dim=None).head_dim_effective == m.hidden_size // m.num_heads


def test_round_trip_and_nested_errors():
    from advisor.estimate import estimate

    e = estimate(resolve_model("llama-3.1-8b"), load_catalog().gpu("h100-sxm"), TrainConfig(**CFG))
    d = e.to_dict()
    assert d["config"] == TrainConfig(**CFG).to_dict()
    # a GPU tier's breakdown has no host_runtime line (only the cpu tier measures one: memory_overheads.py)
    assert set(d["memory"]) == {f.name for f in dataclasses.fields(MemoryBreakdown)} - {"host_runtime"}
    assert Estimate.from_dict(json.loads(json.dumps(d))) == e
    d["config"]["num_gpus"] = 0
    with pytest.raises(SpecError, match=r"^config\.num_gpus: must be > 0"):
        Estimate.from_dict(d)
    assert e.memory.total == sum(d["memory"].values()) == e.memory_per_gpu_bytes


def _catalog_error(tmp_path, replacement: str):
    """(path, message) of loading the real catalog with its first 'hbm_gib: 22.5' line replaced."""
    text = open(load_catalog().path).read().replace("    hbm_gib: 22.5", replacement, 1)
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text)
    with pytest.raises(UserError) as exc:
        load_catalog(bad)
    return bad, str(exc.value)


def test_invalid_catalog_entry_is_one_line_with_file_line_and_field(tmp_path):
    bad, message = _catalog_error(tmp_path, "    hbm_gib: -1")
    assert message == f"{bad}:14: gpus[0].hbm_gib: must be > 0, got -1"


def test_unknown_key_in_catalog_entry_points_at_its_line(tmp_path):
    bad, message = _catalog_error(tmp_path, "    hbm_gib: 22.5\n    hbm_gb: 24")
    assert message.startswith(f"{bad}:15: gpus[0].hbm_gb: unknown field")


def test_bad_config_json_names_file_and_field(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 0, "num_attention_heads": 32,
           "intermediate_size": 14336, "vocab_size": 32000, "max_position_embeddings": 4096}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(UserError) as exc:
        resolve_model(str(path))
    assert str(exc.value) == f"{path}: num_hidden_layers: must be from 1 to 1,260, got 0"  # the key the file has



@pytest.mark.parametrize("spec", [TrainConfig(**CFG), MemoryBreakdown(weights=1), load_catalog().gpu("h100-sxm"),
                                  resolve_model("llama-3.1-8b")])
def test_validate_passes_valid_objects(spec):
    """Each class's hand-written validate() accepts a valid object as it is (and changes nothing)."""
    before = spec.to_dict()
    spec.validate()
    assert spec.to_dict() == before


@pytest.mark.parametrize("change", [dict(num_gpus=0), dict(num_gpus=True), dict(seq_len=4096.0),
                                    dict(strategy="zero4"), dict(activation_checkpointing=1), dict(precision=None),
                                    dict(memory_headroom=float("nan"))])
def test_validate_names_the_field_of_anything_wrong(change):
    """validate() of a changed object, and construction, both name the field."""
    cfg = TrainConfig(**CFG)
    for k, v in change.items():
        object.__setattr__(cfg, k, v)
    with pytest.raises(SpecError, match=f"^{next(iter(change))}:"):
        cfg.validate()
    with pytest.raises(SpecError, match=f"^{next(iter(change))}:"):
        TrainConfig(**(CFG | change))


def test_no_generated_code_in_the_package():
    """No exec/eval anywhere in advisor/ or executor/ (issue 10: one honest validation system)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in [*root.glob("advisor/**/*.py"), *root.glob("executor/**/*.py")]:
        code = re.sub(r"#.*", "", path.read_text())
        assert not re.search(r"(?<![\w.])(exec|eval)\(", code), path


def test_catalog_numbers_must_be_finite(tmp_path):
    bad, message = _catalog_error(tmp_path, "    hbm_gib: .inf")
    assert message == f"{bad}:14: gpus[0].hbm_gib: must be a finite number, got inf"


def test_fast_path_still_converts_and_copies():
    gpu = load_catalog().gpu("h100-sxm")
    spec = GpuSpec.from_dict(gpu.to_dict() | {"hbm_gib": 80})  # int for a float field: stored as a float
    assert type(spec.hbm_gib) is float
    from advisor.estimate import estimate

    e = estimate(resolve_model("llama-3.1-8b"), gpu, TrainConfig(**CFG))
    notes = ["a note"]
    e2 = dataclasses.replace(e, notes=notes)
    assert e2.notes == notes and e2.notes is not notes  # the object owns its list, as before
