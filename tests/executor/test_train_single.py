"""Single-process full SFT through `sftplan run`: refusals, --dry-run, STOP at the epoch boundary, metrics,
report and promote; an absurd learning rate fails the gate and promote refuses."""

import json
import os
import subprocess
import sys
import time

import pytest

from tinyplan import ROOT, approved_plan_file, sftplan, tiny_assets, tiny_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return tiny_assets(tmp_path_factory.mktemp("tiny"), n_train=160, n_golden=4)


def test_refusals_and_dry_run(assets, tmp_path):
    from advisor.planfile import with_hash, write_plan

    unapproved = tmp_path / "unapproved.yaml"
    write_plan(with_hash(tiny_plan(assets)), unapproved)
    proc = sftplan("run", str(unapproved))
    assert proc.returncode == 2 and "not approved" in proc.stderr

    edited = approved_plan_file(tmp_path, tiny_plan(assets), "edited.yaml")
    edited.write_text(edited.read_text().replace("learning_rate: 0.003", "learning_rate: 0.03"))
    proc = sftplan("run", str(edited))
    assert proc.returncode == 2 and "edited after approval" in proc.stderr

    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, strategy="zero3", num_gpus=2))
    run_dir = tmp_path / "dry"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing trained" in proc.stdout and "deepspeed" in proc.stdout
    for name in ("training_args.json", "deepspeed.json", "inputs.json", "launch.sh"):
        assert (run_dir / "config" / name).is_file()
    assert json.loads((run_dir / "config" / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    assert (run_dir / "plan.yaml").is_file() and not (run_dir / "run.json").exists()
    assert not list(run_dir.glob("checkpoint-*"))


def test_stop_at_epoch_boundary_then_promote(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=3, packing=True))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    while not (run_dir / "metrics.jsonl").is_file() and proc.poll() is None:
        time.sleep(0.01)
    (run_dir / "STOP").touch()  # during epoch 1
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "stopped" and info["plan_sha256"] and info["device"] == "cpu"
    gate = json.loads((run_dir / "gate.json").read_text())
    assert [e["epoch"] for e in gate["epochs"]] == [1] and gate["epochs"][0]["passed"]
    (ckpt,) = run_dir.glob("checkpoint-*")
    assert (ckpt / "COMPLETE").is_file()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"epoch", "step", "loss", "learning_rate", "tokens_per_s_per_gpu", "step_time_s", "peak_memory_bytes",
            "elapsed_s"} <= set(rows[0])
    assert rows[-1]["epoch"] == 1.0 and all(r["tokens_per_s_per_gpu"] > 0 for r in rows[1:])
    assert json.loads((run_dir / "report.json").read_text())["status"] == "stopped"
    args = json.loads((run_dir / "config" / "training_args.json").read_text())  # what train.py passed, no prose
    assert args["bf16"] is False and args["use_cpu"] is True and args["num_train_epochs"] == 3
    assert "epoch 1.00/3" in out and "ETA" in out and "loss" in out  # rank 0 progress

    copy = run_dir / "plan.yaml"  # edited after the stop: the rerun refuses it instead of training 1 epoch at lr 0.3
    copy.write_text(copy.read_text().replace("\n  epochs: 3\n", "\n  epochs: 1\n")
                    .replace("\n  learning_rate: 0.003\n", "\n  learning_rate: 0.3\n"))
    proc2 = sftplan("run", str(plan_path), "--out", str(run_dir), "--allow-mismatch")
    assert proc2.returncode == 2 and "is not the approved plan" in proc2.stderr
    assert len(list(run_dir.glob("checkpoint-*"))) == 1
    copy.write_text(plan_path.read_text())

    proc = sftplan("promote", str(run_dir), "--out", str(tmp_path / "promoted"))
    assert proc.returncode == 0, proc.stderr
    promoted = tmp_path / "promoted"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "plan.yaml", "gate.json", "PROMOTED.md"):
        assert (promoted / name).is_file(), name
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(promoted), AutoTokenizer.from_pretrained(promoted)
    ids = tok.apply_chat_template([{"role": "user", "content": "add 1 2"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=3).shape[1] > ids["input_ids"].shape[1]


def test_absurd_learning_rate_fails_gate_and_promote_refuses(assets, tmp_path):
    plan_path = approved_plan_file(tmp_path, tiny_plan(assets, epochs=1, learning_rate=30.0))
    run_dir = tmp_path / "run"
    proc = sftplan("run", str(plan_path), "--out", str(run_dir))
    assert proc.returncode == 4, proc.stderr[-3000:]  # finished, and no epoch through the gate: says so
    assert "no epoch passed the eval gate, nothing to promote" in proc.stdout, proc.stdout[-3000:]
    gate = json.loads((run_dir / "gate.json").read_text())
    assert not gate["epochs"][0]["passed"] and gate["epochs"][0]["reasons"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    proc = sftplan("promote", str(run_dir))
    assert proc.returncode == 2 and "no epoch passed the eval gate" in proc.stderr
    assert not (run_dir / "promoted").exists()
