"""What no tensor shows: the named overhead components, each from a cited figure (data/memory_overheads.yaml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor.catalog import load_catalog
from advisor.memory import memory_breakdown
from advisor.memory_overheads import COMPONENTS, MIB, communicators, load, overhead_bytes, overhead_sources
from advisor.units import GIB
from advisor.models import TrainConfig
from advisor.architecture import resolve_model

REPO = Path(__file__).resolve().parents[2]
CAT = load_catalog()
M8B = resolve_model("llama-3.1-8b")


def cfg(**kw):
    base = dict(num_gpus=1, strategy="single", seq_len=2048, micro_batch_size=1)
    base.update(kw)
    return TrainConfig(**base)


def test_every_figure_cites_a_url_and_every_catalog_tier_is_covered():
    table = load()
    for fid, f in table.figures.items():
        assert f.url.startswith("https://"), fid
        assert len(f.read) > 40, fid  # what was measured, not just a link
    for gpu_id, gpu in CAT.gpus.items():
        if gpu.vendor == "cpu":
            continue
        assert gpu_id in table.tiers, f"{gpu_id}: no overhead figures (data/memory_overheads.yaml tiers)"
        assert set(table.tiers[gpu_id]) >= {"cuda_context", "cublas_workspace", "nccl_buffers"}, gpu_id


def test_components_per_strategy():
    h100 = CAT.gpu("h100-sxm")
    one = overhead_bytes(h100, cfg(), 10 * 2**30)
    assert one["nccl_buffers"] == 0  # one GPU: no communicator
    assert one["cuda_context"] > 0.5 * 2**30
    assert one["cublas_workspace"] == 2 * 32 * MIB  # PyTorch's sm90 default x (forward, backward) threads
    assert one["fragmentation"] == int(0.05 * 10 * 2**30)
    fsdp = overhead_bytes(h100, cfg(num_gpus=8, strategy="fsdp"), 10 * 2**30)
    assert fsdp["nccl_buffers"] > 0.9 * 2**30  # the H100 per-communicator figure, once
    assert overhead_bytes(h100, cfg(num_gpus=64, strategy="fsdp"), 0)["nccl_buffers"] == fsdp["nccl_buffers"]
    assert communicators(cfg(num_gpus=16, strategy="megatron", tp=2, pp=2)) == 3  # tp, pp, dp groups
    a100 = overhead_bytes(CAT.gpu("a100-80gb"), cfg(), 0)
    assert a100["cublas_workspace"] == int(2 * 8.125 * MIB)  # before sm90: ':4096:2:16:8'


def test_breakdown_names_each_component_and_the_total_adds_up():
    b = memory_breakdown(M8B, CAT.gpu("h100-sxm"), cfg(num_gpus=8, strategy="fsdp", seq_len=4096))
    d = b.to_dict()
    for name in COMPONENTS:
        assert name in d and d[name] > 0, name
    assert b.overhead == sum(d[n] for n in COMPONENTS)
    assert b.total == sum(d.values())


def test_cpu_tier_adds_the_measured_host_runtime_and_gpu_tiers_do_not():
    cpu = CAT.gpu("cpu")
    b = memory_breakdown(M8B, cpu, cfg(seq_len=512))
    assert b.host_runtime == int(round(cpu.host_runtime_gib * GIB)) > 0
    assert b.total == sum(b.to_dict().values()) and b.to_dict()["host_runtime"] == b.host_runtime
    assert "--measure cpu" in overhead_sources(cpu, cfg())["host_runtime"]
    for gid in ("h100-sxm", "mi300x"):
        g = memory_breakdown(M8B, CAT.gpu(gid), cfg())
        assert g.host_runtime == 0 and "host_runtime" not in g.to_dict()  # GPU breakdowns keep their keys
        assert "host_runtime" not in overhead_sources(CAT.gpu(gid), cfg())


def test_cpu_estimate_cli_puts_the_runtime_in_the_rss_level_only():
    out = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "llama-3.2-1b", "--gpu", "cpu",
                          "--seq-len", "512", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    rt = d["memory_breakdown_gib"]["host_runtime"]
    assert rt == pytest.approx(CAT.gpu("cpu").host_runtime_gib, abs=1e-3) and "host_runtime" in d["memory_sources"]
    lv = d["memory_levels_gib"]  # a CPU run measures the process RSS: the device level holds the runtime
    assert lv["device"] == d["memory_per_gpu_gib"] and lv["device"] - lv["reserved"] == pytest.approx(rt, abs=2e-3)


def test_sources_name_the_figure_and_how_it_is_counted():
    src = overhead_sources(CAT.gpu("h100-sxm"), cfg(num_gpus=8, strategy="fsdp"))
    assert src["nccl_buffers"].startswith("nccl-h100-nvswitch (https://github.com/NVIDIA/nccl/issues/1685)")
    assert "x 1 communicator" in src["nccl_buffers"]
    assert "nccl_buffers" not in overhead_sources(CAT.gpu("h100-sxm"), cfg())
    assert "assumed" in overhead_sources(CAT.gpu("b200"), cfg())  # no Blackwell figure: says what it borrows


def test_estimate_cli_prints_each_component_with_its_figure():
    out = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm",
                          "--num-gpus", "8", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    for name in COMPONENTS:
        assert name in d["memory_breakdown_gib"]
        assert name in d["memory_sources"]
    assert "ctx-late-80gb" in d["memory_sources"]["cuda_context"]
    lv = d["memory_levels_gib"]
    assert lv["allocated"] < lv["reserved"] < lv["device"] == d["memory_per_gpu_gib"]


@pytest.mark.parametrize("env,expect", [({}, "expandable_segments:True"),
                                        ({"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:512"}, "max_split_size_mb:512")])
def test_the_executor_turns_on_expandable_segments_unless_the_user_chose(env, expect):
    from executor.oom_guard import allocator_defaults

    environ = dict(env)
    line = allocator_defaults(environ)
    assert environ["PYTORCH_CUDA_ALLOC_CONF"] == expect
    assert ("yours" in line) == bool(env)
