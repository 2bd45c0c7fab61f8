"""`sftplan estimate` through the real entry point (python -m advisor): exit codes, messages, --json keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE = ["--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--strategy", "fsdp",
        "--seq-len", "4096", "--micro-batch", "2"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", "estimate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _with(flag: str, value: str) -> list[str]:
    args = list(BASE)
    args[args.index(flag) + 1] = value
    return args


def test_json_has_the_contract_keys():
    out = _run(*BASE, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("fits", "memory_per_gpu_gib", "memory_breakdown_gib", "cpu_memory_per_node_gib",
                "tokens_per_s_per_gpu", "mfu", "step_time_s", "model_params"):
        assert key in data
    assert data["fits"] is True
    assert set(data["memory_breakdown_gib"]) >= {"weights", "gradients", "optimizer", "activations", "logits"}
    assert abs(sum(data["memory_breakdown_gib"].values()) - data["memory_per_gpu_gib"]) < 0.01
    assert 0 < data["mfu"] < 1 and data["model_params"] > 7_900_000_000


def test_table_output():
    out = _run(*BASE)
    assert out.returncode == 0, out.stderr
    assert "GiB" in out.stdout and "tokens/s" in out.stdout.lower()


def test_unknown_gpu_names_valid_and_suggests():
    out = _run(*_with("--gpu", "h100"))
    assert out.returncode == 2
    line = out.stderr.strip()
    assert "\n" not in line and "--gpu" in line and "did you mean" in line and "h100-sxm" in line


def test_unknown_model():
    out = _run(*_with("--model", "llama-3.1-8c"))
    assert out.returncode == 2
    assert "did you mean 'llama-3.1-8b'" in out.stderr and "\n" not in out.stderr.strip()


def test_impossible_numbers_name_the_flag():
    cases = [("--seq-len", "0"), ("--micro-batch", "-1"), ("--num-gpus", "0"), ("--seq-len", "1000000")]
    for flag, value in cases:
        out = _run(*_with(flag, value))
        assert out.returncode == 2, (flag, value, out.stdout)
        assert flag in out.stderr and "\n" not in out.stderr.strip() and "Traceback" not in out.stderr


def test_gpus_not_multiple_of_tp_pp():
    args = _with("--strategy", "megatron")
    args[args.index("--num-gpus") + 1] = "6"
    out = _run(*args, "--tp", "4", "--pp", "1")
    assert out.returncode == 2
    assert "--num-gpus" in out.stderr or "--tp" in out.stderr


def test_offload_reports_cpu_memory():
    out = _run(*_with("--strategy", "zero3-offload-all"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cpu_memory_per_node_gib"] > 50


def test_memory_headroom_makes_a_near_full_config_tight():
    # 70B FSDP on 16 H100s at short sequences: ~78 of 79.6 GiB, inside the default 10% margin
    base = ["--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--num-gpus", "16", "--strategy", "fsdp", "--seq-len"]
    for seq in ("512", "1024", "256", "6144"):
        tight = json.loads(_run(*base, seq, "--json").stdout)
        assert tight["tight"] == (tight["usable_gib"] < tight["memory_per_gpu_gib"] <= tight["hbm_gib"])
        if tight["tight"]:
            break
    args = base + [seq]
    assert tight["tight"] is True and tight["fits"] is False
    assert 0 < tight["headroom_fraction"] < 0.10 and tight["usable_gib"] < tight["hbm_gib"]
    loose = json.loads(_run(*args, "--memory-headroom", "0", "--json").stdout)
    assert loose["fits"] is True and loose["tight"] is False
    text = _run(*args).stdout
    assert f"tight: {tight['memory_per_gpu_gib']:.1f} of 79.6 GiB" in text and "headroom required" in " ".join(text.split())
    bad = _run(*args, "--memory-headroom", "0.9")
    assert bad.returncode == 2 and "--memory-headroom" in bad.stderr and "Traceback" not in bad.stderr
