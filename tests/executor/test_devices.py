"""issue 11.3: every tier the planner can recommend is detected (NVIDIA and AMD), with fake tool outputs:
a fake nvidia-smi / amd-smi / rocm-smi executable on PATH printing what the real one prints."""

import json
import os

import pytest

from executor.preflight import _type_matches, check_devices, visible_accelerators
from test_preflight import make_plan


@pytest.fixture
def tools(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))  # nothing else: no real tool answers
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)

    def put(name, stdout, rc=0):
        (bindir / f"{name}.out").write_text(stdout)
        script = bindir / name
        script.write_text(f"#!/bin/sh\nexec 2>/dev/null; /bin/cat '{bindir / (name + '.out')}'\nexit {rc}\n")
        script.chmod(0o755)

    return put


ROCM_SMI = {f"card{i}": {"Card Series": "AMD Instinct MI300X OAM", "Card Model": "0x74a1", "Card Vendor":
                         "Advanced Micro Devices, Inc. [AMD/ATI]", "Card SKU": "MI3SRIOV"} for i in range(8)}
AMD_SMI = [{"gpu": i, "asic": {"market_name": "AMD Instinct MI300X", "vendor_id": "0x1002", "device_id": "0x74a1"}}
           for i in range(8)]


def test_rocm_smi_mi300x_node(tools, tmp_path):
    tools("rocm-smi", json.dumps(ROCM_SMI))
    names, how = visible_accelerators()
    assert names == ["AMD Instinct MI300X OAM"] * 8 and how.startswith("rocm-smi")
    plan = make_plan(tmp_path, gpu="mi300x", num_gpus=8)
    assert check_devices(plan, allow_mismatch=False) == ["devices: 8 visible (AMD Instinct MI300X OAM) as the plan wants"]


def test_amd_smi_preferred_and_filtered_by_hip_visible_devices(tools, monkeypatch):
    tools("amd-smi", json.dumps(AMD_SMI))
    tools("rocm-smi", "not json", rc=1)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0,3")
    names, how = visible_accelerators()
    assert names == ["AMD Instinct MI300X"] * 2 and how.startswith("amd-smi") and "filtered" in how
    tools("amd-smi", json.dumps({"gpu_data": AMD_SMI}))  # newer amd-smi wraps the list
    assert visible_accelerators()[0] == ["AMD Instinct MI300X"] * 2


def test_mi300x_plan_on_an_nvidia_node_is_refused(tools, tmp_path):
    tools("nvidia-smi", "".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})\n" for i in range(8)))
    plan = make_plan(tmp_path, gpu="mi300x", num_gpus=8)
    with pytest.raises(Exception, match="plan wants mi300x, visible devices are NVIDIA H100 80GB HBM3"):
        check_devices(plan, allow_mismatch=False)


def test_broken_tool_falls_through_to_the_next(tools):
    tools("nvidia-smi", "", rc=9)  # installed, no driver: says nothing useful
    tools("rocm-smi", json.dumps({"card0": ROCM_SMI["card0"]}))
    assert visible_accelerators() == (["AMD Instinct MI300X OAM"], "rocm-smi --showproductname")


@pytest.mark.parametrize("tier, name, ok", [
    ("mi300x", "AMD Instinct MI300X OAM", True),
    ("mi300x", "AMD Instinct MI250X", False),
    ("l4", "NVIDIA L4", True),
    ("l4", "NVIDIA L40S", False),            # 'l4' is not a word of 'L40S'
    ("l40s", "NVIDIA L40S", True),
    ("a10g", "NVIDIA A10G", True),
    ("h100-pcie", "NVIDIA H100 PCIe", True),
    ("h100-pcie", "NVIDIA H100 80GB HBM3", False),
    ("h100-sxm", "NVIDIA H100 PCIe", False),
    ("h200", "NVIDIA H200", True),
    ("h200", "NVIDIA H100 80GB HBM3", False),
    ("b200", "NVIDIA B200", True),
    ("a100-40gb", "NVIDIA A100-SXM4-40GB", True),
    ("a100-80gb", "NVIDIA A100-SXM4-40GB", False),
])
def test_every_catalog_tier_matches_its_device_names(tier, name, ok):
    assert _type_matches(tier, name) is ok


def test_every_catalog_tier_has_a_matching_device_name():
    """The catalog's own display names (what the tools print, give or take a vendor suffix) match their tiers."""
    from advisor.catalog import load_catalog

    catalog = load_catalog()
    for gpu_id, spec in catalog.gpus.items():
        assert _type_matches(gpu_id, spec.name), (gpu_id, spec.name)


def test_dry_run_works_anywhere(tools, tmp_path):
    """issue 11.5: --dry-run checks no disk, device or dataset (run-time checks): a login node with no GPU and
    no copy of the data still gets the config files and the launch command."""
    import subprocess
    import sys

    from advisor.planfile import approve, write_plan
    from tinyplan import ROOT

    plan = approve(make_plan(tmp_path, gpu="mi300x", num_gpus=8, disk_gib=1e6), "Ada")  # 3 PB of checkpoints
    write_plan(plan, tmp_path / "plan.yaml")
    (tmp_path / "train.jsonl").unlink()
    proc = subprocess.run([sys.executable, "-m", "advisor", "run", str(tmp_path / "plan.yaml"), "--out",
                           str(tmp_path / "R"), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing trained" in proc.stdout and (tmp_path / "R" / "config" / "launch.sh").is_file()
    real = subprocess.run([sys.executable, "-m", "advisor", "run", str(tmp_path / "plan.yaml"), "--out",
                           str(tmp_path / "R")], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert real.returncode == 2 and "no such file" in real.stderr  # the real run checks them
