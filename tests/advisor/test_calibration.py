"""sftplan calibrate: synthetic run folders with a known bias calibrate to it; factors only correct their own
class; a bad or foreign report is one line and skipped; a memory factor below 1 needs 3 runs; the plan records
the calibration and applying it changes the estimate by the factor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advisor import calibration, run_metrics
from advisor.architecture import resolve_model
from advisor.catalog import load_catalog
from advisor.estimate import estimate
from advisor.specs import TrainConfig
from advisor.units import GIB

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp: Path, name: str, *, gpu="a100-80gb", strategy="fsdp", params=8_000_000_000, method="full-sft",
         tokens=(1000.0, 800.0), memory=(40.0, 44.0), status="finished", how="accelerator max allocated",
         versions=None) -> Path:
    """A run folder as `sftplan run` leaves it: plan.yaml (the fields calibrate reads) and report.json."""
    d = tmp / name
    d.mkdir()
    sha = f"{hash(name) & 0xFFFFFFFF:08x}" * 8
    plan = {"plan_sha256": sha, "method": method, "model": {"params": params},
            "recommended": {"gpu": gpu, "strategy": strategy, "precision": "bf16-mixed"}}
    (d / "plan.yaml").write_text(yaml.safe_dump(plan))
    rows = [{"step": 1, "tokens_per_s_per_gpu": tokens[1], "peak_memory_bytes": round(memory[1] * GIB),
             "peak_memory_kind": how}]
    write_logged_run(d, rows, {"versions": versions or {"torch": "2.13.0", "transformers": "5.24.0"}},
                     {"plan_sha256": sha, "status": status, "gpu": gpu},
                     {"tokens_per_s_per_gpu": tokens[0], "step_time_s": None, "peak_memory_per_gpu_gib": memory[0]})
    return d


def write_logged_run(d: Path, rows: list[dict], run: dict, report: dict, planned: dict[str, float | None]) -> None:
    """metrics.jsonl (``rows``), run.json (``run``) and a report.json (``report`` plus figures) whose measured
    figures are what the executor computes from those rows (advisor/run_metrics.py), beside ``planned``."""
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "run.json").write_text(json.dumps(run))
    measured = run_metrics.measured_figures(rows, run)
    figures = {name: {"planned": planned[name], **measured[name]} for name in planned}
    (d / "report.json").write_text(json.dumps({**report, "figures": figures}))


def _calibrate(*dirs: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advisor", "calibrate", *map(str, dirs), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_known_bias_is_recovered_within_3_percent(tmp_path):
    # 20% slower than planned and 10% more memory, with run-to-run noise of a few percent
    runs = [_run(tmp_path, f"r{i}", tokens=(1000.0, 800.0 * f), memory=(40.0, 44.0 * g))
            for i, (f, g) in enumerate(((1.0, 1.0), (0.97, 1.02), (1.03, 0.99), (1.01, 1.01)))]
    out = tmp_path / "cal.yaml"
    proc = _calibrate(*runs, out=out)
    assert proc.returncode == 0, proc.stderr
    cal = calibration.load(out)
    c = cal.match("a100-80gb/fsdp/bf16-mixed/full/1-10B")
    assert c.throughput.value == pytest.approx(0.8, rel=0.03) and c.throughput.runs == 4 and not c.throughput.weak
    assert c.memory.value == pytest.approx(1.1, rel=0.03) and c.memory_kind == "accelerator max allocated"
    assert c.versions == ["torch 2.13.0, transformers 5.24.0"] and len(c.plan_sha256s) == 4


def test_one_bad_run_does_not_move_the_median(tmp_path):
    runs = [_run(tmp_path, f"r{i}", tokens=(1000.0, 800.0)) for i in range(3)]
    runs.append(_run(tmp_path, "outlier", tokens=(1000.0, 100.0)))  # a run that hit a slow node
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    assert calibration.load(out).match("a100-80gb/fsdp/bf16-mixed/full/1-10B").throughput.value == pytest.approx(0.8)


def test_mixed_classes_only_correct_their_own(tmp_path):
    a = _run(tmp_path, "fsdp8b", tokens=(1000.0, 800.0))
    b = _run(tmp_path, "lora8b", method="lora", tokens=(1000.0, 1500.0))
    c = _run(tmp_path, "h100", gpu="h100-sxm", tokens=(1000.0, 600.0))
    out = tmp_path / "cal.yaml"
    assert _calibrate(a, b, c, out=out).returncode == 0
    cal = calibration.load(out)
    assert cal.match("a100-80gb/fsdp/bf16-mixed/full/1-10B").throughput.value == pytest.approx(0.8)
    assert cal.match("a100-80gb/fsdp/bf16-mixed/lora/1-10B").throughput.value == pytest.approx(1.5)
    assert cal.match("h100-sxm/fsdp/bf16-mixed/full/1-10B").throughput.value == pytest.approx(0.6)
    assert cal.match("a100-80gb/fsdp/bf16-mixed/full/10-100B") is None  # another size band: raw estimate
    one = cal.match("h100-sxm/fsdp/bf16-mixed/full/1-10B").throughput
    assert one.weak and one.runs == 1


def test_corrupt_foreign_or_unfinished_reports_are_skipped_in_one_line(tmp_path):
    good = _run(tmp_path, "good")
    corrupt = _run(tmp_path, "corrupt")
    (corrupt / "report.json").write_text("{not json")
    foreign = _run(tmp_path, "foreign")
    report = json.loads((foreign / "report.json").read_text())
    (foreign / "report.json").write_text(json.dumps({**report, "plan_sha256": "0" * 64}))
    running = _run(tmp_path, "running", status="running")
    out = tmp_path / "cal.yaml"
    proc = _calibrate(good, corrupt, foreign, running, tmp_path / "missing", out=out)
    assert proc.returncode == 0, proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert len(skipped) == 4 and "Traceback" not in proc.stderr
    assert any("another plan" in ln for ln in skipped) and any("not finished" in ln for ln in skipped)
    assert calibration.load(out).match("a100-80gb/fsdp/bf16-mixed/full/1-10B").throughput.runs == 1
    proc = _calibrate(corrupt, out=tmp_path / "none.yaml")
    assert proc.returncode == 2 and "no usable run folder" in proc.stderr


def test_a_shrinking_memory_factor_needs_three_runs(tmp_path):
    runs = [_run(tmp_path, f"r{i}", memory=(40.0, 30.0)) for i in range(2)]
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    key = "a100-80gb/fsdp/bf16-mixed/full/1-10B"
    got = calibration.applied(calibration.load(out), key)
    assert got.memory_factor is None and "not applied" in got.note
    runs.append(_run(tmp_path, "r2", memory=(40.0, 30.0)))
    assert _calibrate(*runs, out=out).returncode == 0
    assert calibration.applied(calibration.load(out), key).memory_factor == pytest.approx(0.75)


def test_applied_factors_change_the_estimate_and_only_its_class(tmp_path):
    out = tmp_path / "cal.yaml"
    runs = [_run(tmp_path, f"r{i}", tokens=(1000.0, 800.0), memory=(40.0, 44.0)) for i in range(2)]
    assert _calibrate(*runs, out=out).returncode == 0
    cal = calibration.load(out)
    model, gpu = resolve_model("llama-3.1-8b"), load_catalog().gpu("a100-80gb")
    cfg = TrainConfig(num_gpus=8, strategy="fsdp", seq_len=2048, micro_batch_size=1)
    raw = estimate(model, gpu, cfg)
    key = calibration.class_key(gpu.id, cfg.strategy, cfg.precision, cfg.trainable, raw.model_params)
    cal_est = estimate(model, gpu, cfg, calibration=calibration.applied(cal, key))
    assert cal_est.tokens_per_s_per_gpu == pytest.approx(raw.tokens_per_s_per_gpu * 0.8)
    assert cal_est.memory_per_gpu_bytes == pytest.approx(raw.memory_per_gpu_bytes * 1.1, rel=1e-6)
    assert cal_est.raw_tokens_per_s_per_gpu == pytest.approx(raw.tokens_per_s_per_gpu) and "calibrated" in cal_est.calibration
    other = calibration.applied(cal, calibration.class_key("h100-sxm", "fsdp", "bf16-mixed", "full", raw.model_params))
    assert other.throughput_factor is None and "raw estimate" in other.note


def test_plan_records_the_calibration(tmp_path):
    out = tmp_path / "cal.yaml"
    runs = [_run(tmp_path, f"r{i}", gpu="h100-sxm", tokens=(1000.0, 700.0), versions={"torch": "2.1.0"})
            for i in range(2)]
    assert _calibrate(*runs, out=out).returncode == 0
    args = ["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--avg-tokens", "1024", "--goal", "lora-below-bar",
            "--gpu", "h100-sxm", "--json"]
    raw = json.loads(subprocess.run([sys.executable, "-m", "advisor", *args], cwd=ROOT, capture_output=True, text=True,
                                    timeout=120).stdout)
    proc = subprocess.run([sys.executable, "-m", "advisor", *args, "--calibration", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calib = json.loads(proc.stdout)
    assert raw["calibration"] is None and calib["calibration"]["sha256"] == calibration.load(out).sha256
    assert calib["estimate"]["tokens_per_s_per_gpu"] < raw["estimate"]["tokens_per_s_per_gpu"]
    assert calib["plan_sha256"] != raw["plan_sha256"]
    assert any("other software versions" in w and "torch 2.1.0" in w for w in calib["warnings"])


def test_factors_are_bounded(tmp_path):
    garbage = _run(tmp_path, "garbage", tokens=(1000.0, 0.001), memory=(40.0, 4000.0))
    out = tmp_path / "cal.yaml"
    assert _calibrate(garbage, out=out).returncode == 0
    c = calibration.load(out).match("a100-80gb/fsdp/bf16-mixed/full/1-10B")
    assert c.throughput.value == calibration.FACTOR_MIN and c.memory.value == calibration.FACTOR_MAX and c.throughput.weak


def test_the_same_run_given_twice_counts_once(tmp_path):
    run = _run(tmp_path, "run1", tokens=(1000.0, 800.0))
    out = tmp_path / "cal.yaml"
    proc = _calibrate(run, run, f"{tmp_path}/./run1/", out=out)
    assert proc.returncode == 0, proc.stderr
    notes = proc.stderr.splitlines()
    assert len(notes) == 2 and all("counted once" in ln for ln in notes)
    assert "given more than once" in notes[0] and f"the same run folder as {run}" in notes[1]
    assert calibration.load(out).match("a100-80gb/fsdp/bf16-mixed/full/1-10B").throughput.runs == 1
    assert "(1 run(s)" in proc.stdout


def test_no_usable_run_is_one_line_blaming_the_right_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _calibrate(empty, out=tmp_path / "cal.yaml")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("sftplan: no usable run folder: ") and str(empty / "report.json") in proc.stderr
    broken = _run(tmp_path, "broken")
    (broken / "plan.yaml").write_text("foo: [")
    proc = _calibrate(broken, out=tmp_path / "cal.yaml")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{broken / 'plan.yaml'}: not a plan of an sftplan run" in proc.stderr and "report.json" not in proc.stderr
    (broken / "plan.yaml").write_text(yaml.safe_dump({"plan_sha256": "x", "recommended": [1], "model": {}}))
    assert "plan.yaml: not a plan" in _calibrate(broken, out=tmp_path / "cal.yaml").stderr
    assert not (tmp_path / "cal.yaml").exists()


@pytest.mark.parametrize("figure, key, value", [
    ("peak_memory_per_gpu_gib", "measured", float("inf")),
    ("tokens_per_s_per_gpu", "measured", float("nan")),
    ("step_time_s", "measured_uncontended", 0),
    ("tokens_per_s_per_gpu", "measured_uncontended", -5),
    ("tokens_per_s_per_gpu", "planned", "x"),
])
def test_a_damaged_figure_skips_the_run_with_one_line(tmp_path, figure, key, value):
    """Not read around (a 0 uncontended rate falling back to `measured`, an infinite peak capping the memory factor):
    the run is skipped, named, and the healthy runs still count."""
    good = _run(tmp_path, "good")
    bad = _run(tmp_path, "bad")
    report = json.loads((bad / "report.json").read_text())
    report["figures"].setdefault(figure, {"unit": "s"})[key] = value
    (bad / "report.json").write_text(json.dumps(report))
    out = tmp_path / "cal.yaml"
    proc = _calibrate(good, bad, out=out)
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert len(line) == 1 and f"figures.{figure}.{key} is" in line[0] and "damaged report" in line[0]
    assert calibration.load(out).match("a100-80gb/fsdp/bf16-mixed/full/1-10B").throughput.runs == 1


def test_zero_cost_of_owned_hardware_is_not_damage(tmp_path):
    run = _run(tmp_path, "owned")
    report = json.loads((run / "report.json").read_text())
    report["figures"]["cost_usd"] = {"planned": 0.0, "measured": 0.0, "unit": "USD"}
    (run / "report.json").write_text(json.dumps(report))
    assert _calibrate(run, out=tmp_path / "cal.yaml").returncode == 0


def test_the_calibration_is_never_written_into_a_run_folder(tmp_path):
    run = _run(tmp_path, "r")
    before = (run / "report.json").read_bytes()
    proc = _calibrate(run, out=run / "report.json")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "is inside the run folder" in proc.stderr and (run / "report.json").read_bytes() == before


def test_a_missing_folder_or_a_file_is_named_as_such(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    proc = _calibrate(tmp_path / "nope", tmp_path / "f.txt", out=tmp_path / "cal.yaml")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"{tmp_path / 'nope'}: no such folder" in proc.stderr and f"{tmp_path / 'f.txt'}: a file, not a run folder" in proc.stderr


@pytest.mark.parametrize("field, value, says", [
    ("factor", "0.8", "throughput.factor: must be a number (got '0.8')"),
    ("runs", "4", "throughput.runs: must be a whole number (got '4')"),
    ("runs", 2.7, "throughput.runs: must be a whole number (got 2.7)"),
    ("factor", True, "throughput.factor: must be a number (got True)"),
    ("spread", ".nan", "throughput.spread: must be a number"),
    ("weak", "false", "throughput.weak: must be true or false"),
    ("fit", "median", "throughput.fit: must be 'factor' or 'fixed+rate'"),
    ("factor", None, "throughput.factor: must be a number (missing)"),
])
def test_a_hand_edited_calibration_value_is_refused_naming_its_field(tmp_path, field, value, says):
    runs = [_run(tmp_path, f"r{i}") for i in range(2)]
    out = tmp_path / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    key = "a100-80gb/fsdp/bf16-mixed/full/1-10B"
    text = out.read_text()
    data = yaml.safe_load(text)
    if value is None:
        del data["classes"][key]["throughput"][field]
    elif value == ".nan":
        data["classes"][key]["throughput"][field] = float("nan")
    else:
        data["classes"][key]["throughput"][field] = value
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(calibration.UserError) as exc:
        calibration.load(out)
    assert f"classes.{key}.{says}" in str(exc.value)
    # the user sees it as one line and exit 2 where the calibration is applied
    proc = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "llama-3.1-8b", "--gpu", "a100-80gb",
                           "--num-gpus", "8", "--calibration", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
