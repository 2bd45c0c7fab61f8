"""`sftplan demo --method lora`: the same story with the method the rules choose by themselves (under 10k
rows: LoRA r16 + DoRA), the adapter checkpointed every epoch, promoted as adapter + merged weights."""

import json
import time

import pytest

from tinyplan import sftplan

pytestmark = pytest.mark.slow


def test_lora_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    started = time.time()
    proc = sftplan("demo", "--method", "lora", "--out", str(out), timeout=580)
    elapsed = time.time() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 580, f"demo took {elapsed:.0f} s"

    from advisor.planfile import read_plan, verify

    plan = read_plan(out / "plan.yaml")
    assert verify(plan) == "" and plan.method == "lora" and plan.lora is not None and plan.lora.dora
    method = [f for f in plan.findings if f.rule_id.startswith("method.")]
    assert any(f.rule_id == "method.under-10k" for f in method) and not any(f.overridden for f in method)
    assert plan.recommended.strategy == "single" and plan.full_sft_alternative is not None
    run = out / "run"
    gate = json.loads((run / "gate.json").read_text())
    assert [e["epoch"] for e in gate["epochs"]] == [1, 2, 3] and all(e["passed"] for e in gate["epochs"])
    losses = [e["score"]["loss"] for e in gate["epochs"]]
    assert losses == sorted(losses, reverse=True) and losses[-1] < gate["baseline"]["loss"] * 0.92  # it learned
    for ckpt in run.glob("checkpoint-*"):
        assert (ckpt / "COMPLETE").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    promoted = out / "promoted"
    assert (promoted / "adapter_model.safetensors").is_file() and (promoted / "merged" / "model.safetensors").is_file()
    for label in ("approved plan", "gate report", "promoted adapter", "merged weights"):
        assert label in proc.stdout
