"""The real hardware catalog: required tiers, complete entries, clear errors."""
import dataclasses

import pytest

from advisor.catalog import load_catalog
from advisor.errors import UserError
from advisor.models import GpuSpec

REQUIRED = ["a10g", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-pcie", "h100-sxm", "h200", "b200", "mi300x"]


def test_required_ids_present():
    cat = load_catalog()
    for gid in REQUIRED:
        assert gid in cat.gpus, gid


@pytest.mark.parametrize("gid", REQUIRED)
def test_entry_complete(gid):
    spec = load_catalog().gpus[gid]
    for name in (f.name for f in dataclasses.fields(GpuSpec)):
        if name in ("notes", "step_overhead_s", "micro_batch_overhead_s",  # optional: advisor/step_overhead.py's defaults
                    "host_runtime_gib", "startup_s"):  # optional: the cpu tier's runtime RSS (advisor/memory_overheads.py)
            continue
        value = getattr(spec, name)
        assert value is not None and value != "", f"{gid}.{name} empty"
    assert spec.price_source.strip() and spec.price_as_of.strip() and spec.mfu_source.strip()


def test_cpu_entry_records_the_measured_host_runtime():
    cat = load_catalog()
    cpu = cat.gpus["cpu"]
    # `sftplan catalog --measure cpu`: the RSS of a process holding torch + transformers + peft is hundreds of MiB
    assert cpu.host_runtime_gib is not None and 0.1 < cpu.host_runtime_gib < 4
    assert all(g.host_runtime_gib is None for g in cat.gpus.values() if g.vendor != "cpu")  # GPU tiers: no such line


def test_mi300x_is_amd_without_megatron():
    spec = load_catalog().gpus["mi300x"]
    assert spec.vendor == "amd"
    assert spec.megatron_supported is False


@pytest.mark.parametrize("gid", ["a100-80gb", "h100-sxm", "h200", "b200"])
def test_big_tiers_scale_to_128_gpus(gid):
    spec = load_catalog().gpus[gid]
    assert spec.max_nodes >= 16
    assert spec.gpus_per_node * spec.max_nodes >= 128
    assert spec.inter_node_bandwidth_gbit_per_s > 0


def test_broken_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "catalog.yaml"
    bad.write_text("gpus:\n  - id: x\n    name: [unclosed\n")
    with pytest.raises(UserError) as exc:
        load_catalog(bad)
    assert f"{bad}:" in str(exc.value)
    assert any(f":{n}" in str(exc.value) for n in range(2, 6))


def test_invalid_entry_names_file_and_line(tmp_path):
    real = load_catalog()
    text = open(real.path).read().replace("    hbm_gib: 22.5", "    hbm_gib: -1", 1)
    bad = tmp_path / "catalog.yaml"
    bad.write_text(text)
    with pytest.raises(UserError) as exc:
        load_catalog(bad)
    msg = str(exc.value)
    assert str(bad) in msg and "hbm_gib" in msg
    assert f"{bad}:14" in msg, msg


def test_unknown_gpu_did_you_mean():
    with pytest.raises(UserError) as exc:
        load_catalog().gpu("h10-sxm")
    msg = str(exc.value)
    assert "h100-sxm" in msg and msg.startswith("gpu: ") and exc.value.field == "gpu"  # the CLI maps it to --gpu
    with pytest.raises(UserError) as exc:
        load_catalog().gpu("h10-sxm", field="have[0].gpu")
    assert exc.value.field == "have[0].gpu"
