"""The two-part throughput fit of `sftplan calibrate`: runs of two shapes with a known fixed overhead and
efficiency recover both (and the tokens-per-step bias) within 3%; one shape falls back to the factor; the
fit carries to a third shape, where one factor cannot; the fixed term is in the estimate and the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_calibration import write_logged_run

from advisor import calibration
from advisor.architecture import resolve_model
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.specs import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
KEY = "cpu/single/bf16-mixed/full/<1B"
# the truth the synthetic runs are drawn from: the host's fixed overhead is 3x the catalog's, the math
# runs at 0.8 of the estimated efficiency (compute x 1.25), and 10% more tokens per step than planned
OVERHEAD_X, COMPUTE_X, TOKENS_X = 3.0, 1.25, 1.10
TEMPLATE_TOKENS = 10  # the chat template's tokens per row, which the dataset's text count leaves out


def _run(tmp: Path, name: str, *, micro: int, accum: int, seq: int, overhead_s: float, rest_s: float,
         noise: float = 1.0, avg: int | None = None) -> Path:
    """A run folder as `sftplan run` leaves it: plan.yaml (the fields calibrate reads) and report.json."""
    d = tmp / name
    d.mkdir()
    sha = f"{abs(hash(name)) & 0xFFFFFFFF:08x}" * 8
    planned_step = overhead_s + rest_s
    tokens_per_step = micro * accum * seq
    planned_tps = tokens_per_step / planned_step
    measured_step = (OVERHEAD_X * overhead_s + COMPUTE_X * rest_s) * noise
    measured_tps = tokens_per_step * TOKENS_X / measured_step
    request = {"max_seq_len": seq}
    if avg is not None:  # rows of `avg` text tokens + TEMPLATE_TOKENS of chat template, padded to seq
        request["dataset"] = {"avg_tokens": avg}
        measured_tps = micro * accum * (avg + TEMPLATE_TOKENS) / measured_step
    plan = {"plan_sha256": sha, "method": "full-sft", "model": {"params": 400_000}, "request": request,
            "recommended": {"gpu": "cpu", "strategy": "single", "precision": "bf16-mixed", "micro_batch_size": micro,
                            "grad_accum": accum},
            "estimate": {"step_time_s": planned_step, "step_overhead_s": overhead_s, "tokens_per_s_per_gpu": planned_tps}}
    (d / "plan.yaml").write_text(yaml.safe_dump(plan))
    rows = [{"step": 1, "tokens_per_s_per_gpu": measured_tps, "step_time_s": measured_step,
             "peak_memory_bytes": round(1.1 * 2**30), "peak_memory_kind": "process RSS"}]
    write_logged_run(d, rows, {}, {"plan_sha256": sha, "status": "finished", "gpu": "cpu"},
                     {"tokens_per_s_per_gpu": planned_tps, "step_time_s": planned_step, "peak_memory_per_gpu_gib": 1.0})
    return d


def _calibrate(*dirs: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", "calibrate", *map(str, dirs), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def _two_shapes(tmp: Path) -> list[Path]:
    small = dict(micro=4, accum=1, seq=64, overhead_s=0.10, rest_s=0.05)  # overhead-bound
    large = dict(micro=16, accum=4, seq=256, overhead_s=0.25, rest_s=2.0)  # compute-bound
    return [_run(tmp, "s1", **small, noise=1.02), _run(tmp, "s2", **small, noise=0.98),
            _run(tmp, "l1", **large, noise=1.01), _run(tmp, "l2", **large, noise=0.99)]


def test_two_shapes_recover_the_fixed_overhead_and_the_efficiency_within_3_percent(tmp_path):
    out = tmp_path / "cal.yaml"
    proc = _calibrate(*_two_shapes(tmp_path), out=out)
    assert proc.returncode == 0, proc.stderr
    assert "fixed+rate fit, 4 runs of 2 shapes" in proc.stdout
    t = calibration.load(out).match(KEY).throughput
    assert t.fit == calibration.FIT_FIXED_RATE and t.shapes == 2 and t.runs == 4
    assert t.overhead_factor == pytest.approx(OVERHEAD_X, rel=0.03)
    assert t.compute_factor == pytest.approx(COMPUTE_X, rel=0.03)
    assert t.tokens_factor == pytest.approx(TOKENS_X, rel=0.03)
    assert t.residual < 0.03


def test_one_shape_falls_back_to_the_factor(tmp_path):
    runs = [_run(tmp_path, f"r{i}", micro=4, accum=1, seq=64, overhead_s=0.10, rest_s=0.05, noise=n)
            for i, n in enumerate((1.0, 1.02))]
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    t = calibration.load(out).match(KEY).throughput
    assert t.fit == calibration.FIT_FACTOR and t.overhead_factor is None
    truth = TOKENS_X * 0.15 / (OVERHEAD_X * 0.10 + COMPUTE_X * 0.05)  # measured / planned tokens/s at that shape
    assert t.value == pytest.approx(truth, rel=0.03)


def test_the_same_overhead_share_cannot_tell_the_parts_apart(tmp_path):
    # two shapes whose fixed share of the step is the same: no information on the split
    a = _run(tmp_path, "a", micro=4, accum=1, seq=64, overhead_s=0.10, rest_s=0.05)
    b = _run(tmp_path, "b", micro=8, accum=2, seq=64, overhead_s=0.20, rest_s=0.10)
    out = tmp_path / "cal.yaml"
    assert _calibrate(a, b, out=out).returncode == 0
    assert calibration.load(out).match(KEY).throughput.fit == calibration.FIT_FACTOR


def test_the_fit_carries_to_a_third_shape_where_a_factor_cannot(tmp_path):
    out_two, out_one = tmp_path / "two.yaml", tmp_path / "one.yaml"
    runs = _two_shapes(tmp_path)
    assert _calibrate(*runs, out=out_two).returncode == 0
    assert _calibrate(runs[0], out=out_one).returncode == 0
    model, gpu = resolve_model(str(_tiny_config(tmp_path))), load_catalog().gpu("cpu")
    cfg = TrainConfig(num_gpus=1, strategy="single", seq_len=512, micro_batch_size=8, grad_accum=8,
                      activation_checkpointing=False)
    raw = estimate(model, gpu, cfg)
    assert 0 < raw.step_overhead_s < raw.step_time_s
    truth_step = OVERHEAD_X * raw.step_overhead_s + COMPUTE_X * (raw.step_time_s - raw.step_overhead_s)
    truth_tps = raw.tokens_per_s_per_gpu * raw.step_time_s / truth_step * TOKENS_X
    key = calibration.class_key("cpu", "single", "bf16-mixed", "full", raw.model_params)
    two = estimate(model, gpu, cfg, calibration=calibration.applied(calibration.load(out_two), key))
    one = estimate(model, gpu, cfg, calibration=calibration.applied(calibration.load(out_one), key))
    assert two.step_time_s == pytest.approx(truth_step, rel=0.03)
    assert two.tokens_per_s_per_gpu == pytest.approx(truth_tps, rel=0.03)
    assert abs(one.tokens_per_s_per_gpu / truth_tps - 1) > 0.3  # the one-shape factor misses this shape
    assert two.raw_step_time_s == pytest.approx(raw.step_time_s) and "fixed+rate" in two.calibration


def _tiny_config(tmp: Path) -> Path:
    """A config.json of a ~0.4M-parameter Llama (the shape executor/tiny.py trains)."""
    path = tmp / "tiny" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                                "num_key_value_heads": 2, "vocab_size": 320, "max_position_embeddings": 512,
                                "tie_word_embeddings": False}))
    return path


def test_the_fixed_term_is_in_the_estimate_and_small_on_gpus():
    gpu = load_catalog().gpu("h100-sxm")
    model = resolve_model("llama-3.1-8b")
    cfg = TrainConfig(num_gpus=8, strategy="fsdp", seq_len=4096, micro_batch_size=1, grad_accum=4)
    e = estimate(model, gpu, cfg)
    assert 0 < e.step_overhead_s < 0.01 * e.step_time_s  # the launch floor is hidden behind real kernels
    cpu = load_catalog().gpu("cpu")
    assert cpu.step_overhead_s is not None and cpu.micro_batch_overhead_s is not None  # measured, in the catalog


@pytest.mark.slow
def test_catalog_measure_cpu_reports_peak_overheads_and_load():
    pytest.importorskip("torch")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # how the cpu entry was measured (CPU time, load-proof)
    proc = subprocess.run([sys.executable, "-m", "advisor", "catalog", "--measure", "cpu", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["float32_tflops"] > 0 and got["tiny_model_tflops"] > 0
    assert got["step_overhead_s"] >= 0 and got["micro_batch_overhead_s"] >= 0
    assert got["step_overhead_s"] + got["micro_batch_overhead_s"] > 0  # a Trainer step is never free
    assert got["threads"] == 1 and len(got["load_average_1min"]) == 2 and got["catalog_step_overhead_s"] == load_catalog().gpu("cpu").step_overhead_s


def test_one_slow_run_barely_moves_the_two_part_fit(tmp_path):
    runs = _two_shapes(tmp_path)
    runs.append(_run(tmp_path, "m1", micro=8, accum=2, seq=128, overhead_s=0.15, rest_s=0.5, noise=1.0))
    runs.append(_run(tmp_path, "m2", micro=8, accum=2, seq=128, overhead_s=0.15, rest_s=0.5, noise=1.01))
    runs.append(_run(tmp_path, "slow", micro=8, accum=2, seq=128, overhead_s=0.15, rest_s=0.5, noise=2.0))  # a slow node
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    t = calibration.load(out).match(KEY).throughput
    assert t.fit == calibration.FIT_FIXED_RATE and t.shapes == 3 and t.runs == 7
    assert t.overhead_factor == pytest.approx(OVERHEAD_X, rel=0.03)
    assert t.compute_factor == pytest.approx(COMPUTE_X, rel=0.03)


def test_the_template_tokens_per_sequence_carry_to_another_dataset(tmp_path):
    # short rows (14 text tokens padded to 26) and long ones (128 padded to 163): the real tokens per step
    # over the planned ones differ (0.92 vs 0.85), the template's tokens per row do not
    runs = [_run(tmp_path, "short", micro=16, accum=2, seq=26, overhead_s=0.10, rest_s=0.05, avg=14),
            _run(tmp_path, "long", micro=16, accum=2, seq=163, overhead_s=0.10, rest_s=1.0, avg=128)]
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    got = calibration.applied(calibration.load(out), KEY)
    assert got.throughput.extra_tokens_per_sequence == pytest.approx(TEMPLATE_TOKENS, rel=0.03)
    assert "+10 template tokens per sequence" in got.note
    import dataclasses

    mid = dataclasses.replace(got, text_tokens_per_sequence=46.0)  # a third dataset: 46 text tokens, padded to 68
    assert mid.tokens_factor(68) == pytest.approx((46 + TEMPLATE_TOKENS) / 68, rel=0.03)
    assert dataclasses.replace(got, packed=True).tokens_factor(68) == 1.0  # packed sequences are full
    assert got.tokens_factor(68) == got.throughput.tokens_factor  # no dataset known: the runs' median ratio
