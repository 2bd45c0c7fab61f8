"""`sftplan evaluate` on a LoRA checkpoint scores base + adapter (lm-eval's HFLM ``peft=``), not the base alone.

peft initialises lora_B to zero, so an adapter that trained a few steps changes the model little and coarse
metrics (accuracy over 16 prompts) can come out equal to the base's (the LoRA demo's did). These tests set the
adapter's B matrices to non-zero values, so the adapted model is a different function: its log-likelihoods
through the deploy module's own model loader must differ from the base's, an untouched (zero-B) adapter's
must equal them, and the deploy suite must see the regression on the generative task whose answers are the
base model's own greedy answers.
"""

from __future__ import annotations

import json
import shutil

import pytest

from test_deploy import _checks, _run_dir, suite  # noqa: F401 - suite is a fixture
from tinyplan import sftplan, tiny_plan

pytestmark = pytest.mark.slow


def _save_adapter(assets, ckpt, *, b_std: float) -> None:
    """The plan's adapter (executor/lora.py: DoRA, all linear projections) on the tiny model, with lora_B drawn
    from N(0, b_std) (0: peft's own zero init), saved as Trainer saves a LoRA checkpoint (adapter + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from executor.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, wrap

    model = wrap(AutoModelForCausalLM.from_pretrained(assets / "model"), tiny_plan(assets, method="lora"))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and b_std:
                p.copy_(torch.randn(p.shape, generator=gen) * b_std)
    ckpt.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(assets / "model").save_pretrained(ckpt)
    assert (ckpt / ADAPTER_CONFIG).is_file() and (ckpt / ADAPTER_WEIGHTS).is_file()


def _loglikelihoods(lm, pairs) -> list[float]:
    from lm_eval.api.instance import Instance

    reqs = [Instance("loglikelihood", {}, (ctx, cont), i) for i, (ctx, cont) in enumerate(pairs)]
    return [ll for ll, _greedy in lm.loglikelihood(reqs, disable_tqdm=True)]


def test_deploy_loader_applies_the_adapter(suite, tmp_path):  # noqa: F811
    from advisor.models import DeploySettings
    from executor.deploy import _lm

    assets, _tasks = suite
    base = str(assets / "model")
    pairs = [("add 1 2", " 3"), ("opposite of up", " down"), ("reverse: dog blue", " blue dog")]
    settings = DeploySettings(batch_size=2)
    want = _loglikelihoods(_lm(assets / "model", base, settings), pairs)
    for b_std, same in ((0.0, True), (0.2, False)):
        ckpt = tmp_path / f"b{b_std}"
        _save_adapter(assets, ckpt, b_std=b_std)
        lm = _lm(ckpt, base, settings)
        assert type(lm.model).__name__.startswith("PeftModel") and lm.model.active_adapters == ["default"]
        got = _loglikelihoods(lm, pairs)
        if same:  # B = 0: base + adapter is the base function
            assert got == pytest.approx(want, rel=1e-5, abs=1e-5)
        else:
            assert max(abs(g - w) for g, w in zip(got, want, strict=True)) > 0.1, (got, want)


def test_evaluate_sees_a_changed_adapter(suite, tmp_path):  # noqa: F811
    """The CLI path: an adapter that changes the model fails the generative check the base passes at 1.0."""
    assets, tasks = suite
    run = _run_dir(tmp_path, assets, tasks, tuned_seed=None)
    ckpt = run / "checkpoint-4"
    shutil.rmtree(ckpt)  # the base model's copy: becomes a LoRA checkpoint (adapter + tokenizer, COMPLETE)
    _save_adapter(assets, ckpt, b_std=0.2)
    from advisor.planfile import read_plan
    from executor.names import write_complete

    write_complete(ckpt, step=4, epoch=1.0, plan_sha256=read_plan(run / "plan.yaml").plan_sha256)
    proc = sftplan("evaluate", str(run))
    assert proc.returncode == 1, proc.stderr[-3000:] + proc.stdout[-3000:]
    gen = _checks(run)["local gen"]
    assert gen["base"] == 1.0 and gen["tuned"] < 1.0 and gen["verdict"] == "FAILED", gen
    report = json.loads((run / "deploy.json").read_text())
    assert report["checkpoint"] == "checkpoint-4" and report["adapter"] is True
    assert "checkpoint-4 (base + its LoRA adapter)" in proc.stdout
