"""`sftplan demo`: tiny model -> plan (full SFT forced) -> approve -> run 3 epochs -> gate -> promote, on the
CPU, in under 3 minutes, printing where each artefact is."""

import json
import time

import pytest

from tinyplan import sftplan

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    started = time.time()
    proc = sftplan("demo", "--out", str(out), timeout=900)  # a hang guard; its time is a figure (README), not a test
    elapsed = time.time() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + f" ({elapsed:.0f} s)"

    from advisor.planfile import read_plan, verify

    plan = read_plan(out / "plan.yaml")
    assert verify(plan) == "" and plan.method == "full-sft" and plan.hyperparameters.epochs == 3
    assert any(f.rule_id.startswith("method") and f.overridden for f in plan.findings)
    run = out / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["allow_mismatch"] is False  # planned for the cpu tier: no mismatch
    assert plan.recommended.gpu == "cpu" and (out / "request.yaml").is_file()
    report = json.loads((run / "report.json").read_text())
    assert report["gpu"] == "cpu" and "plan vs measured" in proc.stdout
    # the cpu tier's estimate holds the measured host runtime: the run's process RSS is within x1.5 of it
    # (tensors alone planned 0.01 GiB against ~0.52 GiB measured, x50)
    mem = report["figures"]["peak_memory_per_gpu_gib"]
    assert plan.estimate.memory_breakdown_gib["host_runtime"] > 0.1 and mem["how"] == "process RSS"
    assert 1 / 1.5 < mem["measured"] / mem["planned"] < 1.5, mem
    gate = json.loads((run / "gate.json").read_text())
    assert [e["epoch"] for e in gate["epochs"]] == [1, 2, 3] and all(e["passed"] for e in gate["epochs"])
    assert gate["epochs"][-1]["score"]["loss"] < gate["baseline"]["loss"] * 0.6  # it learned
    assert len(list(run.glob("checkpoint-*/COMPLETE"))) == 3
    for f in ("report.md", "report.json", "metrics.jsonl", "log.txt", "config/launch.sh"):
        assert (run / f).is_file(), f
    assert (out / "promoted" / "model.safetensors").is_file() and (out / "promoted" / "PROMOTED.md").is_file()
    deploy = {c["name"]: c for c in json.loads((run / "deploy.json").read_text())["checks"]}  # lm-eval ran
    assert deploy["sftplan_local_mc"]["verdict"] == "passed" and deploy["sftplan_local_mc"]["base"] is not None
    assert deploy["MMLU-Pro"]["verdict"] == "unavailable"
    assert "sftplan_local_gen" in (out / "promoted" / "PROMOTED.md").read_text()
    for label in ("approved plan", "run folder", "gate report", "promoted model"):
        assert label in proc.stdout
