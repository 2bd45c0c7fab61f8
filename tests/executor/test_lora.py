"""LoRA / DoRA plans through `sftplan run` (peft + Trainer) on the tiny model, the path a user takes.

Single process: the golden loss falls, only adapter parameters get gradients, every checkpoint holds
the adapter (not the base weights) with optimizer and trainer state; `sftplan promote` exports the
adapter and, with --merge, merged weights that score and generate exactly as base + adapter.
2 processes: DDP and FSDP (torchrun), ZeRO-3 (deepspeed) train only the adapter; FSDP and ZeRO-3 shard the
frozen weights. SIGKILL mid-epoch and resume reaches the uninterrupted run's golden losses. A LoRA plan
edited after approval is refused.
"""

import json

import pytest

from tinyplan import approved_plan_file, finished_epochs, resume_after_losing_last_epoch, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow
LORA_LR = 1e-2  # a random tiny model: the adapter needs a large rate to move the golden loss in 2 epochs


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=64, n_golden=4)


def _lora_reports(run_dir, world):
    return [json.loads((run_dir / "shards" / f"lora-rank-{r}.json").read_text()) for r in range(world)]


def _assert_only_adapter_trains(rep):
    assert rep["trainable_not_adapter"] == [], rep
    grads = rep["grads"]
    assert grads["non_adapter_with_grad"] == [] and grads["adapter_with_grad"] == grads["params_with_grad"] > 0, rep
    assert 0 < rep["adapter_full_numel"] < rep["frozen_full_numel"]


def _greedy(model, tok, prompts):
    import torch

    out = []
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
        out.append(gen[0, ids["input_ids"].shape[1]:].tolist())
    return out


def test_single_process_lora_learns_checkpoints_and_promotes(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, method="lora", epochs=2, learning_rate=LORA_LR,
                                                       packing=True))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    gate = json.loads((run_dir / "gate.json").read_text())
    losses = [e["score"]["loss"] for e in gate["epochs"]]
    assert len(losses) == 2 and losses[0] < gate["baseline"]["loss"] and losses[1] < losses[0], gate
    (rep,) = _lora_reports(run_dir, 1)
    _assert_only_adapter_trains(rep)
    for e in gate["epochs"]:
        ckpt = run_dir / e["checkpoint"]
        names = {p.name for p in ckpt.iterdir()}
        assert {"COMPLETE", "adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                "trainer_state.json"} <= names, names
        assert "model.safetensors" not in names  # the frozen base is not copied into every checkpoint
    assert json.loads((run_dir / "report.json").read_text())["status"] == "finished"

    promoted = tmp_path / "promoted"
    proc = sftplan("promote", str(run_dir), "--out", str(promoted), "--merge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "PROMOTED.md",
                 "merged/model.safetensors", "merged/config.json", "merged/tokenizer.json"):
        assert (promoted / name).is_file(), name
    assert not (promoted / "model.safetensors").exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from executor.evalgate import load_golden, score_golden

    tok = AutoTokenizer.from_pretrained(promoted)
    golden = load_golden(assets / "golden.jsonl")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(assets / "model"), promoted).eval()
    merged = AutoModelForCausalLM.from_pretrained(promoted / "merged").eval()
    best = json.loads((promoted / "promoted.json").read_text())["score"]["loss"]
    assert score_golden(adapted, tok, golden, max_new_tokens=8)["loss"] == pytest.approx(best, rel=1e-4)
    assert score_golden(merged, tok, golden, max_new_tokens=8)["loss"] == pytest.approx(best, rel=1e-4)
    prompts = [json.loads(line)["prompt"] for line in (assets / "golden.jsonl").read_text().splitlines()]
    assert _greedy(merged, tok, prompts) == _greedy(adapted, tok, prompts)

    proc = sftplan("promote", str(run_dir), "--out", str(tmp_path / "again"), "--merge")
    assert proc.returncode == 0

    # --merge folds the adapter into the base model the run names: it must still be the approved one
    import shutil

    changed = tmp_path / "changed-base"
    shutil.copytree(assets / "model", changed)
    cfg = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 0.5}))
    inputs = run_dir / "config" / "inputs.json"
    inputs.chmod(0o644)
    inputs.write_text(json.dumps({**json.loads(inputs.read_text()), "model": str(changed)}))
    proc = sftplan("promote", str(run_dir), "--out", str(tmp_path / "merged-wrong"), "--merge")
    assert proc.returncode == 2 and "--merge: base model" in proc.stderr and "config.json" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "merged-wrong").exists()


def test_lora_plan_edited_after_approval_is_refused(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, method="lora", learning_rate=LORA_LR))
    text = plan_path.read_text()
    assert "rank: 16" in text
    plan_path.write_text(text.replace("rank: 16", "rank: 64", 1))
    proc = sftplan("run", str(plan_path), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and "edited after approval" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_lora_dry_run_writes_configs(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, method="lora", strategy="zero3", num_gpus=2))
    proc = sftplan("run", str(plan_path), "--out", str(tmp_path / "dry"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "deepspeed" in proc.stdout and (tmp_path / "dry" / "config" / "deepspeed.json").is_file()


@pytest.mark.parametrize("strategy, launcher, kind", [("ddp", "torchrun", "tensor"),
                                                      ("fsdp", "torchrun", "dtensor"),
                                                      ("zero3", "deepspeed", "zero3-partition")])
def test_two_process_lora_shards_frozen_weights(tmp_path, strategy, launcher, kind):
    """ddp replicates the frozen base on each rank (and syncs only adapter gradients); fsdp and zero3 shard it.
    ZeRO-3 gathers every module per token on gloo, and ddp adds nothing past one epoch: both kept short."""
    rows = 32 if strategy == "fsdp" else 16
    assets = tiny_assets(tmp_path, n_train=rows, n_golden=4 if strategy == "fsdp" else 2)
    epochs = 2 if strategy == "fsdp" else 1
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy=strategy, num_gpus=2, epochs=epochs,
                                                       method="lora", learning_rate=LORA_LR))
    run_dir = tmp_path / "run"
    ext = tmp_path / "torch_extensions"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), env={"TORCH_EXTENSIONS_DIR": str(ext)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and launcher in info["launch"][0]
    shards = [json.loads((run_dir / "shards" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert all(s["param_kinds"] == [kind] and s["world_size"] == 2 for s in shards), shards
    reports = _lora_reports(run_dir, 2)
    if strategy == "ddp":  # the ranks saw different rows, yet hold one adapter: its gradients were all-reduced
        assert reports[0]["adapter_local_checksum"] == pytest.approx(reports[1]["adapter_local_checksum"], rel=1e-6)
    for rep in reports:
        _assert_only_adapter_trains(rep)
        if strategy == "ddp":  # each rank holds the whole model
            assert rep["frozen_local_numel"] == rep["frozen_full_numel"], rep
        else:  # the frozen base weights are sharded: each rank holds about half of them
            assert rep["frozen_local_numel"] <= rep["frozen_full_numel"] * 0.55, rep
    gate = finished_epochs(run_dir, weights="adapter_model.safetensors")
    assert len(gate["epochs"]) == epochs and all(e["passed"] for e in gate["epochs"])
    assert gate["epochs"][-1]["score"]["loss"] < gate["baseline"]["loss"]
    if strategy != "fsdp":
        return
    # lose epoch 2, resume from the sharded epoch-1 checkpoint (adapter + optimizer shards): the same loss
    first, second = gate["epochs"]
    again = resume_after_losing_last_epoch(plan_path, run_dir, gate, env={"TORCH_EXTENSIONS_DIR": str(ext)})
    assert again[1]["score"]["loss"] == pytest.approx(second["score"]["loss"], rel=1e-5)


def _kill_mid_epoch_two(plan_path, run_dir, steps_per_epoch):
    """As tests/executor/test_resume.py: SIGKILL the launcher's process group (and `sftplan run`) a few
    steps into epoch 2, with this process as the subreaper so the orphans are reaped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import test_resume as r

    r._become_subreaper()
    outer = subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)],
                             cwd=r.ROOT, env=dict(os.environ, PYTHONPATH=str(r.ROOT)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while r._last_step(run_dir) <= steps_per_epoch + 2:
            assert outer.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the run did not reach epoch 2"
            time.sleep(0.01)
        os.killpg(json.loads((run_dir / "run.json").read_text())["pid"], signal.SIGKILL)
        os.killpg(outer.pid, signal.SIGKILL)
    finally:
        outer.wait(timeout=60)
        r._reap_all()


def test_lora_sigkill_then_resume_matches_uninterrupted(tmp_path):
    rows, micro = 64, 4
    steps_per_epoch = rows // micro
    assets = tiny_assets(tmp_path, n_train=rows, n_golden=4)
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=2, micro_batch_size=micro, method="lora",
                                                       learning_rate=LORA_LR))
    ref = tmp_path / "reference"
    proc = sftplan("run", str(plan_path), "--out", str(ref))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_gate = json.loads((ref / "gate.json").read_text())

    run = tmp_path / "killed"
    _kill_mid_epoch_two(plan_path, run, steps_per_epoch)
    first = run / f"checkpoint-{steps_per_epoch}"
    assert (first / "COMPLETE").is_file() and (first / "adapter_model.safetensors").is_file()
    assert [e["epoch"] for e in json.loads((run / "gate.json").read_text())["epochs"]] == [1]
    assert not (run / f"checkpoint-{2 * steps_per_epoch}" / "COMPLETE").exists()

    proc = sftplan("run", str(plan_path), "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "train_result.json").read_text())["resumed_from"] == first.name
    gate = json.loads((run / "gate.json").read_text())
    assert gate["baseline"] == ref_gate["baseline"]
    for got, want in zip(gate["epochs"], ref_gate["epochs"], strict=True):
        assert got["checkpoint"] == want["checkpoint"]
        assert got["score"]["loss"] == pytest.approx(want["score"]["loss"], rel=1e-6, abs=1e-7)
