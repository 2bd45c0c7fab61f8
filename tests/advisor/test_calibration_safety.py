"""sftplan calibrate's inputs and output, guarded: -o creates a new file or replaces a calibration, nothing else;
a report.json that disagrees with the run's metrics.jsonl is not learned from; the calibration file is read as
strictly as a hand-written request (a key given twice, an unknown key, a YAML 1.1 number, a negative spread)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_calibration import _calibrate, _run, write_logged_run

from advisor import calibration
from advisor.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
KEY = "a100-80gb/fsdp/bf16-mixed/full/1-10B"


def _one_line_refusal(proc: subprocess.CompletedProcess, *says: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    for s in says:
        assert s in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- 1. what -o may replace


@pytest.mark.parametrize("name, content", [
    ("plan.yaml", "schema_version: 1\nplan_sha256: abc\napproval: {by: ann, at: '2026-01-01T00:00:00Z'}\n"),
    ("train.jsonl", '{"prompt": "q", "response": "a"}\n'),
    ("promoted.json", '{"promoted": "run-1", "sha256": "x"}\n'),
    ("other.yaml", "schema: sftplan-something/1\nclasses: {}\n"),
    ("notes.txt", "sftplan-calibration/1 is mentioned here, but this is no calibration\n"),
    ("empty.yaml", ""),
])
def test_o_never_replaces_a_file_that_is_not_a_calibration(tmp_path, name, content):
    run = _run(tmp_path, "r")
    target = tmp_path / "keep" / name
    target.parent.mkdir()
    target.write_text(content)
    proc = _calibrate(run, out=target)
    _one_line_refusal(proc, f"-o {target}: is an existing file that is not a readable calibration")
    assert target.read_text() == content and sorted(p.name for p in target.parent.iterdir()) == [name]


def test_o_never_replaces_a_link_a_pipe_or_a_folder(tmp_path):
    run = _run(tmp_path, "r")
    real = tmp_path / "real.yaml"
    assert _calibrate(run, out=real).returncode == 0
    before = real.read_bytes()
    link = tmp_path / "link.yaml"
    link.symlink_to(real)  # even a link to a calibration: the rename would replace the link, not the file
    _one_line_refusal(_calibrate(run, out=link), f"-o {link}: is a symbolic link")
    assert link.is_symlink() and real.read_bytes() == before
    dangling = tmp_path / "dangling.yaml"
    dangling.symlink_to(tmp_path / "nowhere.yaml")
    _one_line_refusal(_calibrate(run, out=dangling), f"-o {dangling}: is a symbolic link")
    assert dangling.is_symlink() and not (tmp_path / "nowhere.yaml").exists()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # a device node or a pipe: not a regular file (no /dev in a test run as root)
    _one_line_refusal(_calibrate(run, out=fifo), f"-o {fifo}: is not a regular file")
    assert not fifo.is_file() and fifo.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_refusal(_calibrate(run, out=folder), f"-o {folder}: is a folder")
    assert list(folder.iterdir()) == []


def test_o_replaces_a_calibration_even_a_damaged_one(tmp_path):
    runs = [_run(tmp_path, f"r{i}", tokens=(1000.0, 800.0)) for i in range(2)]
    out = tmp_path / "cal.yaml"
    assert _calibrate(runs[0], out=out).returncode == 0  # a new file
    assert _calibrate(*runs, out=out).returncode == 0  # a calibration: replaced
    assert calibration.load(out).match(KEY).throughput.runs == 2
    out.write_text(out.read_text().replace("      runs: 2\n", "      runs: 2\n      runs: 3\n", 1))  # still a calibration
    assert _calibrate(*runs, out=out).returncode == 0
    assert calibration.load(out).match(KEY).throughput.runs == 2


def test_o_never_writes_into_a_run_folder_or_a_model_folder(tmp_path):
    run = _run(tmp_path, "r")
    _one_line_refusal(_calibrate(run, out=run / "cal.yaml"), "is inside the run folder")
    _one_line_refusal(_calibrate(run, out=run), "is inside the run folder")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    _one_line_refusal(_calibrate(run, out=model / "cal.yaml"), f"-o {model / 'cal.yaml'}: is inside the model folder")
    _one_line_refusal(_calibrate(run, out=model / "config.json"), "is inside the model folder")
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]
    assert _calibrate(run, out=Path(f"{run}/../beside.yaml")).returncode == 0  # beside the run folder: fine
    assert (tmp_path / "beside.yaml").is_file()
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "plan.yaml", "report.json", "run.json"]


# --------------------------------------------------------------------------- 2. a report edited after the run


@pytest.mark.parametrize("gpu, figure, key, value", [
    ("cpu", "tokens_per_s_per_gpu", "measured_uncontended", 99999.0),
    ("a100-80gb", "peak_memory_per_gpu_gib", "measured", 0.1),
    ("a100-80gb", "tokens_per_s_per_gpu", "measured", 5000.0),
    ("a100-80gb", "step_time_s", "measured", 0.5),
    ("a100-80gb", "peak_memory_per_gpu_gib", "how", "process RSS"),
])
def test_a_report_edited_by_hand_is_not_learned_from(tmp_path, gpu, figure, key, value):
    good = _run(tmp_path, "good", gpu=gpu, tokens=(1000.0, 800.0), memory=(40.0, 44.0))
    bad = _run(tmp_path, "bad", gpu=gpu, tokens=(1000.0, 800.0), memory=(40.0, 44.0))
    report = json.loads((bad / "report.json").read_text())
    report["figures"][figure][key] = value
    (bad / "report.json").write_text(json.dumps(report))
    out = tmp_path / "cal.yaml"
    proc = _calibrate(good, bad, out=out)
    assert proc.returncode == 0, proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and str(bad) in skipped[0] and f"figures.{figure}.{key} is {value!r}" in skipped[0]
    assert "metrics.jsonl" in skipped[0]
    c = calibration.load(out).match(f"{gpu}/fsdp/bf16-mixed/full/1-10B")
    assert c.throughput.runs == 1 and c.throughput.value == pytest.approx(0.8)
    assert c.memory.runs == 1 and c.memory.value == pytest.approx(1.1) and c.memory_kind == "accelerator max allocated"


def test_a_run_without_metrics_is_skipped_with_a_note(tmp_path):
    good, bare = _run(tmp_path, "good"), _run(tmp_path, "bare")
    (bare / "metrics.jsonl").unlink()
    proc = _calibrate(good, bare, out=tmp_path / "cal.yaml")
    assert proc.returncode == 0, proc.stderr
    skipped = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and f"{bare / 'metrics.jsonl'}: missing" in skipped[0]
    assert calibration.load(tmp_path / "cal.yaml").match(KEY).throughput.runs == 1
    _one_line_refusal(_calibrate(bare, out=tmp_path / "none.yaml"), "no usable run folder", "metrics.jsonl: missing")


def _executor_run(tmp: Path, name: str) -> Path:
    """A run folder whose report.json the executor itself wrote (executor/report.py) from its metrics.jsonl."""
    from advisor.planfile import write_plan
    from executor.report import write_report

    sys.path.insert(0, str(ROOT / "tests" / "executor"))  # the executor's report tests' plan
    try:
        from test_report import plan_for_report
    finally:
        sys.path.pop(0)
    (tmp / name).mkdir()
    plan = write_plan(plan_for_report(), tmp / name / "plan.yaml")
    rows = [{"step": s, "tokens_per_s_per_gpu": tps, "step_time_s": 32768 / tps, "peak_memory_bytes": mem,
             "elapsed_s": 3.0 * s, "cpu_time_s": 1.1 * 32768 / tps, "torch_threads": 4}
            for s, tps, mem in [(1, 100.0, 10 * 2**30), (2, 3000.0, 40 * 2**30), (3, 3210.5, 45.3 * 2**30),
                                (4, 3100.0, 44 * 2**30), (5, 2900.1, 42 * 2**30), (6, 3001.7, 41 * 2**30)]]
    (tmp / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut by a kill')
    (tmp / name / "run.json").write_text(json.dumps({"plan_sha256": plan.plan_sha256, "status": "finished",
                                                     "device": "cuda", "versions": {"torch": "2.13.0"}}))
    write_report(tmp / name, plan)
    return tmp / name


def test_what_the_executor_reports_is_learned_and_an_edit_of_it_is_not(tmp_path):
    """The report executor/report.py writes agrees with calibrate's recomputation (the same function): learned;
    the same report with one figure changed by hand is not."""
    run, edited = _executor_run(tmp_path, "run"), _executor_run(tmp_path, "edited")
    out = tmp_path / "cal.yaml"
    proc = _calibrate(run, out=out)
    assert proc.returncode == 0 and "skipped" not in proc.stderr, proc.stderr
    c = calibration.load(out).match("h100-sxm/fsdp/bf16-mixed/full/1-10B")
    assert c.throughput.value == pytest.approx(3001.7 / 4000.0, abs=1e-4)  # the median of steps 2-6 / planned
    assert c.memory.value == pytest.approx(45.3 / 50.0, abs=1e-4) and c.memory_kind == "accelerator max allocated"
    report = json.loads((edited / "report.json").read_text())
    report["figures"]["tokens_per_s_per_gpu"]["measured"] *= 1.01
    (edited / "report.json").write_text(json.dumps(report, indent=2))
    proc = _calibrate(run, edited, out=out)
    assert proc.returncode == 0, proc.stderr
    assert "figures.tokens_per_s_per_gpu.measured is" in proc.stderr and str(edited) in proc.stderr


def test_the_executor_and_calibrate_share_one_computation():
    import executor.report as report

    from advisor import run_metrics

    assert report.measured_figures is run_metrics.measured_figures and calibration.run_metrics is run_metrics


# --------------------------------------------------------------------------- 3. reading the calibration file


def _written(tmp: Path) -> Path:
    runs = [_run(tmp, f"r{i}", tokens=(1000.0, 800.0)) for i in range(2)]
    out = tmp / "cal.yaml"
    assert _calibrate(*runs, out=out).returncode == 0
    return out


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if fragment in ln)


def test_a_key_given_twice_is_refused_by_line(tmp_path):
    out = _written(tmp_path)
    text = out.read_text()
    first = _line_of(text, "factor: 0.8")
    out.write_text(text.replace("factor: 0.8\n", "factor: 0.8\n      factor: 5.0\n", 1))
    with pytest.raises(UserError) as exc:
        calibration.load(out)
    assert str(exc.value) == (f"{out}:{first + 1}: 'factor' is given twice (first on line {first}); YAML would keep "
                              "only the last: say it once")
    proc = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", "llama-3.1-8b", "--gpu", "a100-80gb",
                           "--num-gpus", "8", "--calibration", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    _one_line_refusal(proc, f"{out}:{first + 1}: 'factor' is given twice")


@pytest.mark.parametrize("old, new, path, says", [
    ("    throughput:\n", "    thruput:\n", f"classes.{KEY}.thruput", "unknown key (did you mean 'throughput'?)"),
    ("runs:\n", "run:\n", "run", "unknown key (did you mean 'runs'?)"),
    ("      factor: 0.8\n", "      factor: 0.8\n      factr: 0.9\n", f"classes.{KEY}.throughput.factr", "unknown key"),
    ("      factor: 0.8\n", "      factor: 0.8\n      overhead_factor: 3.0\n", f"classes.{KEY}.throughput.overhead_factor",
     "only with fit 'fixed+rate'"),
    ("    memory_kind:", "    memory_knd:", f"classes.{KEY}.memory_knd", "unknown key (did you mean 'memory_kind'?)"),
    ("  tokens_ratio:", "  tokens_ratoi:", "runs[0].tokens_ratoi", "unknown key"),
])
def test_an_unknown_key_is_refused_naming_its_path_and_line(tmp_path, old, new, path, says):
    out = _written(tmp_path)
    text = out.read_text().replace(old, new, 1)
    out.write_text(text)
    line = _line_of(text, new.strip().splitlines()[-1].split(":")[0] + ":")
    with pytest.raises(UserError) as exc:
        calibration.load(out)
    assert str(exc.value).startswith(f"{out}:{line}: {path}: {says}"), str(exc.value)


@pytest.mark.parametrize("old, new, says", [
    ("factor: 0.8\n", "factor: 0x10\n", "throughput.factor: '0x10' is read by YAML 1.1 as 16"),
    ("factor: 0.8\n", "factor: 1_0\n", "throughput.factor: '1_0' is read by YAML 1.1 as 10"),
    ("runs: 2\n", "runs: 02\n", "throughput.runs: '02' is read by YAML 1.1 as 2"),
    ("runs: 2\n", "runs: 1:00\n", "throughput.runs: '1:00' is read by YAML 1.1 as 60"),
    ("weak: false\n", "weak: no\n", "throughput.weak: 'no' is read by YAML 1.1 as False"),
])
def test_yaml_1_1_numbers_are_refused_and_an_exponent_is_a_number(tmp_path, old, new, says):
    out = _written(tmp_path)
    text = out.read_text().replace(old, new, 1)
    out.write_text(text)
    with pytest.raises(UserError) as exc:
        calibration.load(out)
    assert f"{out}:{_line_of(text, new.strip())}: classes.{KEY}.{says}" in str(exc.value), str(exc.value)
    out.write_text(text.replace(new, "factor: 8e-1\n" if "factor" in old else old, 1))
    assert calibration.load(out).match(KEY).throughput.value == 0.8  # 8e-1: a number, as YAML 1.2 reads it


@pytest.mark.parametrize("field, value, says", [
    ("spread", -3, "throughput.spread: must be 0 or more"),
    ("residual", -0.1, "throughput.residual: must be 0 or more"),
    ("shapes", 0, "throughput.shapes: must be 1 or more"),
])
def test_a_negative_spread_or_residual_is_refused(tmp_path, field, value, says):
    out = tmp_path / "cal.yaml"
    out.write_text(calibration.to_yaml({KEY: _fixed_rate_class()}, []))
    text = out.read_text()
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{field}:"))
    lines[at] = lines[at].split(":")[0] + f": {value}"
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    with pytest.raises(UserError) as exc:
        calibration.load(out)
    assert f"{out}:{_line_of(text, f'{field}: {value}')}: classes.{KEY}.{says}" in str(exc.value), str(exc.value)


def _fixed_rate_class() -> calibration.ClassFactors:
    t = calibration.Factor(value=0.8, runs=4, spread=0.05, weak=False, fit=calibration.FIT_FIXED_RATE,
                           overhead_factor=3.0, compute_factor=1.25, tokens_factor=1.1, extra_tokens_per_sequence=10.0,
                           shapes=2, residual=0.01)
    m = calibration.Factor(value=1.1, runs=4, spread=0.0, weak=False)
    return calibration.ClassFactors(key=KEY, throughput=t, memory=m, memory_kind="process RSS",
                                    versions=["torch 2.13.0, transformers 5.24.0", "1e5"], plan_sha256s=["12e45", "0x1f"])


def test_what_calibrate_writes_loads_back_as_it_was(tmp_path):
    """The round trip, both kinds of fit, and text that YAML would read as a number (a plan hash of digits and one
    e, a version label) stays text."""
    c = _fixed_rate_class()
    one = calibration.ClassFactors(key="h100-sxm/fsdp/bf16-mixed/lora/1-10B",
                                   throughput=calibration.Factor(value=0.7, runs=1, spread=0.0, weak=True), memory=None,
                                   memory_kind="unknown", versions=["unknown"], plan_sha256s=["ab" * 32])
    sample = calibration.RunSample(run_dir="1e5", plan_sha256="12e45", key=KEY, tokens_ratio=0.8, memory_ratio=None,
                                   memory_kind="unknown", versions={"torch": "2.13.0"}, shape="2x8x2048")
    out = tmp_path / "cal.yaml"
    out.write_text(calibration.to_yaml({KEY: c, one.key: one}, [sample]))
    got = calibration.load(out)
    assert got.classes == {KEY: c, one.key: one}
    assert yaml.safe_load(out.read_text())["runs"][0]["run_dir"] == "1e5"
